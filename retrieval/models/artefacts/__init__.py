"""Trained artefacts, each with its provenance (data, command, seed, date, figures) beside it.

- rerank.json: the linear re-ranking and highlighting weights (search.py, answer.py);
- reader.npz + reader.json: the reader's weights and their provenance (reader.py);
- reader.onnx, encoder.onnx: the layers of the reader and of multilingual-e5-small as ONNX
  graphs without their weights (onnx_layers.py, written by `python -m
  retrieval.tools.onnx_graphs`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from ...errors import TanyaError

ARTEFACTS = Path(__file__).resolve().parent


@functools.cache
def read_artefact(name: str) -> dict:
    """A JSON artefact of this folder; a missing or broken one names the file and the fix."""
    path = ARTEFACTS / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TanyaError(
            f"the trained artefact {path} cannot be read ({exc}); restore it from the "
            "package or the repository: git checkout -- retrieval/models/artefacts"
        ) from exc
