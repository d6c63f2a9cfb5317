"""Hybrid search: dense (FAISS) and keyword (BM25) candidates, fused, then lightly re-ranked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import SearchConfig
from ..corpus.chunking import Chunk
from ..index.store import PassageStore
from ..index.terms import ragged_positions
from ..models.artefacts import read_artefact
from .query import TYPES, Query


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with its final score and the two scores it came from."""

    chunk: Chunk
    row: int
    score: float
    dense: float
    keyword: float
    sentence: float = 0.0  # best cosine of one of its sentences
    fused: float = 0.0  # the fused score before re-ranking


# Re-ranking weights (artefacts/rerank.json): a base row (fused score, dense cosine,
# BM25 / best BM25, best sentence cosine, share of question words in the passage,
# 1 / fused rank) and one typed row per question type (novel numbers, years, dates, number
# words, capitalised names that are not in the question).
RERANK = read_artefact("rerank.json")
BASE_WEIGHTS = np.array(RERANK["base_weights"])
TYPED_WEIGHTS = np.array([RERANK["typed_weights"][kind] for kind in TYPES])


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


def fuse(
    dense: np.ndarray, keyword: np.ndarray, config: SearchConfig, known: float = 1.0
) -> np.ndarray:
    """Fused scores from dense cosines and BM25 scores; `known` scales the keyword side down."""
    w_dense, w_keyword = config.dense_weight, (1 - config.dense_weight) * known
    if config.fusion == "rrf":
        return w_dense / (config.rrf_k + _ranks(dense)) + w_keyword / (
            config.rrf_k + _ranks(keyword)
        )
    return w_dense * _minmax(dense) + w_keyword * _minmax(keyword)


def sentence_scores(index: PassageStore, rows: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
    """For each row, the best cosine between the query and one of its sentences."""
    starts, ends = index.sentence_offsets[rows], index.sentence_offsets[rows + 1]
    lengths = ends - starts
    # A chunk without sentence vectors falls back to its own cosine.
    best = index.vectors[rows] @ query_vector
    has = lengths > 0
    if has.any():
        positions, firsts = ragged_positions(starts[has], lengths[has])
        sims = index.sentence_vectors[positions] @ query_vector
        best[has] = np.maximum.reduceat(sims, firsts)
    return best


def rerank_features(
    fused: np.ndarray,
    dense: np.ndarray,
    keyword: np.ndarray,
    sentence: np.ndarray,
    covered: np.ndarray,
    typed: np.ndarray,
) -> np.ndarray:
    """One row of features per candidate (already in fused order)."""
    base = np.column_stack(
        [
            fused,
            dense,
            keyword / max(float(keyword.max()), 1e-9),
            sentence,
            covered,
            1.0 / np.arange(1, len(fused) + 1),
        ]
    )
    return np.column_stack([base, typed])


def rerank_scores(features: np.ndarray, kind: str) -> np.ndarray:
    """The learned linear score of each candidate for a question of this type."""
    return features[:, :6] @ BASE_WEIGHTS + features[:, 6:] @ TYPED_WEIGHTS[TYPES.index(kind)]


def known_share(index: PassageStore, query: Query) -> float:
    """Share of the query's words the keyword index knows (low for an English question)."""
    tokens = query.stems
    return index.keyword.known(tokens) / len(tokens) if tokens else 0.0


def search(
    index: PassageStore,
    query: Query,
    config: SearchConfig,
    k: int | None = None,
    hidden: np.ndarray | None = None,
    include: Sequence[int] = (),
) -> list[Hit]:
    """The best chunks for a query, best first, scored on the union of both candidate lists
    and the rows in `include` (a follow-up's: the passages the last reply quoted).

    `hidden` (distinct chunk rows) are left out, as if they were not in the index: the evaluation
    uses it to ask a question whose answer is nowhere to be found.
    """
    hidden = np.zeros(0, dtype=np.int64) if hidden is None else hidden
    if index.count - len(hidden) <= 0:
        return []
    n_cand = min(config.candidates, index.count - len(hidden))
    query_vector = query.vector
    dense_rows = index.dense_search(query_vector, min(n_cand + len(hidden), index.count))
    dense_rows = dense_rows[~np.isin(dense_rows, hidden)][:n_cand]
    keyword_rows, _ = index.keyword.top(query.stems, n_cand, hidden)
    extra = np.asarray(include, dtype=np.int64)
    extra = extra[~np.isin(extra, hidden)]
    rows = np.unique(np.concatenate([dense_rows, keyword_rows, extra]))
    dense = index.vectors[rows] @ query_vector
    keyword = index.keyword.scores_at(query.stems, rows)
    fused = fuse(dense, keyword, config, known_share(index, query))
    order = np.argsort(-fused, kind="stable")[: k or config.candidates]
    rows, fused, dense, keyword = rows[order], fused[order], dense[order], keyword[order]
    sentence = sentence_scores(index, rows, query_vector)
    score = fused
    if config.rerank:
        top = min(config.rerank_candidates, len(rows))
        typed, covered = index.passage_terms.features(rows[:top], query.word_set)
        features = rerank_features(
            *(a[:top] for a in (fused, dense, keyword, sentence)), covered, typed
        )
        learned = rerank_scores(features, query.kind)
        # The score becomes a softmax share among the re-ranked candidates (0..1, like the
        # training target); the rest keep their places below them with a score of 0.
        share = np.exp(learned - learned.max())
        share /= share.sum()
        reorder = np.concatenate([np.argsort(-learned, kind="stable"), np.arange(top, len(rows))])
        score = np.concatenate([share, np.zeros(len(rows) - top)])
        rows, fused, dense, keyword, sentence, score = (
            a[reorder] for a in (rows, fused, dense, keyword, sentence, score)
        )
    columns = [c.tolist() for c in (rows, score, dense, keyword, sentence, fused)]
    return [Hit(index.chunks[r], r, *values) for r, *values in zip(*columns, strict=True)]
