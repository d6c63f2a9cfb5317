"""FAISS index choice and recall, synthetic scale data, and what indexing encodes."""

from __future__ import annotations

import dataclasses
import functools

import faiss
import numpy as np
import pytest

from retrieval.config import IndexConfig
from retrieval.corpus.articles import load_corpus
from retrieval.index.folder import build_index, encoder_texts, load_index, make_faiss, tune_faiss
from retrieval.index.keyword import tokenize
from retrieval.tools.bench import (
    fit_vector_model,
    local_intrinsic_dimension,
    synthetic_texts,
    weak_hnsw_recall,
)


@functools.cache
def _reference(n: int = 600, dim: int = 384, seed: int = 1) -> np.ndarray:
    """Embedding-like rows: a shared mean direction and a decaying spectrum, normalised."""
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.sqrt(np.arange(1, dim + 1))
    rows = rng.standard_normal((n, dim)) * scales + 0.3 * rng.standard_normal(dim)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _random(n: int, dim: int = 384) -> np.ndarray:
    rows = np.random.default_rng(n).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _recall_at_10(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray) -> float:
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, 10)
    _, found = index.search(queries, 10)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module")
def corpus_vectors() -> tuple[np.ndarray, np.ndarray]:
    both = fit_vector_model(_reference(), "gaussian").sample(4100, np.random.default_rng(0))
    return both[:4000], both[4000:]


def test_approximate_index_chosen_by_auto_reaches_recall_095(corpus_vectors):
    vectors, queries = corpus_vectors
    index = make_faiss(vectors, IndexConfig(approximate_above=1000))
    assert isinstance(index, faiss.IndexHNSWFlat) and index.ntotal == 4000
    assert _recall_at_10(index, vectors, queries) >= 0.95


def test_ivf_recall_grows_with_probes_and_is_exact_when_all_lists_are_probed(corpus_vectors):
    vectors, queries = corpus_vectors
    recalls = []
    for nprobe in (1, 8, 10_000):
        index = make_faiss(vectors, IndexConfig(faiss="ivf", ivf_nlist=64, ivf_nprobe=nprobe))
        recalls.append(_recall_at_10(index, vectors, queries))
    assert recalls[0] < recalls[1] < recalls[2] == 1.0


@pytest.mark.parametrize(
    ("faiss_setting", "n", "expected"),
    [
        ("auto", 100, faiss.IndexFlatIP),
        ("auto", 301, faiss.IndexHNSWFlat),
        ("flat", 500, faiss.IndexFlatIP),
        ("hnsw", 100, faiss.IndexHNSWFlat),
        ("ivf", 500, faiss.IndexIVFFlat),
        ("ivf", 10, faiss.IndexFlatIP),  # too few vectors to train lists: exact is exact
    ],
)
def test_index_kind_follows_the_config(faiss_setting, n, expected):
    config = IndexConfig(faiss=faiss_setting, approximate_above=300)
    vectors = _random(n)
    assert type(make_faiss(vectors, config)) is expected


def test_search_parameters_are_applied_again_after_loading(tmp_path):
    config = IndexConfig(faiss="hnsw", hnsw_ef_search=77)
    index = make_faiss(_random(200), config)
    assert index.hnsw.efSearch == 77
    faiss.write_index(index, str(tmp_path / "f.index"))
    loaded = faiss.read_index(str(tmp_path / "f.index"))
    tune_faiss(loaded, dataclasses.replace(config, hnsw_ef_search=150))
    assert loaded.hnsw.efSearch == 150

    ivf = make_faiss(_random(2000), IndexConfig(faiss="ivf", ivf_nprobe=9))
    assert ivf.nprobe == 9


def test_synthetic_vectors_are_normalised_and_keep_the_reference_mean_direction():
    reference = _reference()
    vectors = fit_vector_model(reference).sample(3000, np.random.default_rng(5), batch=1000)
    assert vectors.shape == (3000, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    mean = reference.mean(axis=0)
    cosine = (
        vectors.mean(axis=0) @ mean / np.linalg.norm(vectors.mean(axis=0)) / np.linalg.norm(mean)
    )
    assert cosine > 0.9


@functools.cache
def _clustered(n: int = 1200, dim: int = 384, clusters: int = 30, rank: int = 6) -> np.ndarray:
    """Rows near a few centres, each cluster spread in only `rank` directions: low dimension."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((clusters, dim))
    spans = rng.standard_normal((clusters, rank, dim)) * 0.15
    picks = rng.integers(0, clusters, n)
    rows = centres[picks] + np.einsum("nr,nrd->nd", rng.standard_normal((n, rank)), spans[picks])
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_local_intrinsic_dimension_finds_the_dimension_data_spreads_in():
    rng = np.random.default_rng(4)
    for dim in (4, 12):
        rows = rng.standard_normal((3000, dim)) @ rng.standard_normal((dim, 384))
        estimate = local_intrinsic_dimension(rows.astype(np.float32), sample=500)
        assert 0.7 * dim <= estimate <= 1.3 * dim


def test_mixture_keeps_the_reference_dimension_where_one_gaussian_inflates_it():
    reference = _clustered()
    real = local_intrinsic_dimension(reference)
    rng = np.random.default_rng(7)
    mixture = fit_vector_model(reference, "mixture")
    gaussian = fit_vector_model(reference, "gaussian")
    assert len(mixture.weights) == 30 and len(gaussian.weights) == 1
    assert np.isclose(mixture.weights.sum(), 1.0)
    lid_mixture = local_intrinsic_dimension(mixture.sample(len(reference), rng))
    lid_gaussian = local_intrinsic_dimension(gaussian.sample(len(reference), rng))
    assert lid_gaussian > 2 * real
    assert abs(lid_mixture - real) < (lid_gaussian - real) / 3
    # The same ordering shows in how well a weak HNSW searches each.
    rng = np.random.default_rng(8)
    recall_real = weak_hnsw_recall(reference, rng)
    recall_mixture = weak_hnsw_recall(mixture.sample(len(reference), rng), rng)
    recall_gaussian = weak_hnsw_recall(gaussian.sample(len(reference), rng), rng)
    assert recall_gaussian < recall_mixture - 0.1
    assert abs(recall_mixture - recall_real) < recall_mixture - recall_gaussian


def test_synthetic_texts_follow_a_zipf_vocabulary():
    texts = synthetic_texts(2000, np.random.default_rng(6), vocabulary=5000)
    assert len(texts) == 2000
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) >= 20 and max(lengths) <= 80
    counts: dict[str, int] = {}
    for text in texts:
        for word in text.split():
            counts[word] = counts.get(word, 0) + 1
    ranked = sorted(counts.values(), reverse=True)
    assert ranked[0] > 50 * ranked[len(ranked) // 2]  # a long tail, as in real text
    assert all(tokenize(w) == [w] for w in list(counts)[:200])  # one keyword token per word


@pytest.mark.parametrize("stored", [True, False])
def test_build_encodes_each_text_once_and_keeps_sentence_rows(
    tiny_corpus, tiny_config, fake_embedder, tmp_path, stored
):
    # index.sentence_vectors: each sentence embedded, or its passage's vector standing in.
    config = dataclasses.replace(
        tiny_config, index=dataclasses.replace(tiny_config.index, sentence_vectors=stored)
    )
    articles = load_corpus(tiny_corpus).articles
    data, stats = build_index(tmp_path / "build", articles, fake_embedder, config)
    passages, sentences = encoder_texts(list(data.chunks), stored)
    assert sorted(fake_embedder.calls) == sorted(passages + sentences)
    assert any(len(c.sentences) > 1 for c in data.chunks)
    assert bool(sentences) == stored
    assert stats.embedded == len(data.chunks)
    assert data.sentence_offsets[-1] == len(data.sentence_vectors)
    for row, chunk in enumerate(data.chunks):
        np.testing.assert_allclose(data.vectors[row], fake_embedder._vector(chunk.text))
        a, b = data.sentence_offsets[row], data.sentence_offsets[row + 1]
        assert b - a == len(chunk.sentences)
        for vector, (s, e) in zip(data.sentence_vectors[a:b], chunk.sentences, strict=True):
            text = chunk.text[s - chunk.start : e - chunk.start] if stored else chunk.text
            np.testing.assert_allclose(vector, fake_embedder._vector(text))


def test_incremental_build_reuses_sentence_rows(tiny_corpus, tiny_index, fake_embedder, tmp_path):
    previous = load_index(tiny_index.index_path, tiny_index)
    articles = load_corpus(tiny_corpus).articles
    fake_embedder.calls.clear()
    data, stats = build_index(tmp_path / "build", articles, fake_embedder, tiny_index, previous)
    assert stats.embedded == 0 and fake_embedder.calls == []
    assert [s.id for s in data.segments] == [s.id for s in previous.segments]
    np.testing.assert_array_equal(
        np.asarray(data.sentence_vectors), np.asarray(previous.sentence_vectors)
    )
    np.testing.assert_array_equal(data.sentence_offsets, previous.sentence_offsets)
