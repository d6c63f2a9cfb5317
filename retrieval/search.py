"""Hybrid search: dense (FAISS) and keyword (BM25) candidates, fused into one ranking."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chunking import Chunk
from .config import SearchConfig
from .index import IndexData


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with its fused score and the two scores it came from."""

    chunk: Chunk
    row: int
    score: float
    dense: float
    keyword: float


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        return np.ones_like(values) if high > 0 else np.zeros_like(values)
    return (values - low) / (high - low)


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


def fuse(dense: np.ndarray, keyword: np.ndarray, config: SearchConfig) -> np.ndarray:
    """Fused scores of candidates from their dense cosines and BM25 scores."""
    w = config.dense_weight
    if config.fusion == "rrf":
        return w / (config.rrf_k + _ranks(dense)) + (1 - w) / (config.rrf_k + _ranks(keyword))
    return w * _minmax(dense) + (1 - w) * _minmax(keyword)


def search(
    index: IndexData, query: str, query_vector: np.ndarray, config: SearchConfig, k: int | None = None
) -> list[Hit]:
    """The best chunks for a query, best first, scored on the union of both candidate lists."""
    if index.count == 0:
        return []
    n_cand = min(config.candidates, index.count)
    _, dense_rows = index.faiss_index.search(query_vector.reshape(1, -1), n_cand)
    keyword_all = index.keyword.scores(query)
    if n_cand < index.count:
        keyword_rows = np.argpartition(-keyword_all, n_cand - 1)[:n_cand]
    else:
        keyword_rows = np.arange(index.count)
    keyword_rows = keyword_rows[keyword_all[keyword_rows] > 0]
    rows = np.unique(np.concatenate([dense_rows[0][dense_rows[0] >= 0], keyword_rows]))
    dense = index.vectors[rows] @ query_vector
    keyword = keyword_all[rows]
    fused = fuse(dense, keyword, config)
    order = np.argsort(-fused, kind="stable")[: k or config.candidates]
    return [
        Hit(index.chunks[rows[i]], int(rows[i]), float(fused[i]), float(dense[i]), float(keyword[i]))
        for i in order
    ]
