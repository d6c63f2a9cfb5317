"""Write the reader's ONNX graph: `python -m retrieval.tools.reader_graph`.

The graph (models/artefacts/reader.onnx) holds the reader's layers without their weights,
which come from reader.npz when the reader loads (reader_onnx.py). It depends only on the
encoder's shape (layers, hidden size, heads), so a retrained reader of the same shape keeps
it. Needs the `onnx` package (in the test extras).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models import reader_onnx
from ..models.reader import WEIGHTS, Reader


def graph_bytes(weights: str | Path = WEIGHTS) -> bytes:
    """The serialised graph for the reader whose weights file is `weights`."""
    reader = Reader(weights, runtime="numpy")
    tensors = reader_onnx.tensors(reader.layers, (reader.span_w, reader.span_b))
    model = reader_onnx.build_graph(tensors, len(reader.layers), reader.heads, reader.eps)
    return model.SerializeToString()


def main(argv: list[str] | None = None) -> int:
    """Write the reader's ONNX graph (without weights) for ONNX Runtime."""
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.tools.reader_graph", description=main.__doc__
    )
    parser.add_argument("--weights", default=str(WEIGHTS), help="the reader's weights file")
    parser.add_argument("--out", default=str(reader_onnx.GRAPH), help="where the graph goes")
    args = parser.parse_args(argv)
    data = graph_bytes(args.weights)
    Path(args.out).write_bytes(data)
    print(f"wrote {args.out} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
