"""The incremental keyword side: BM25 from per-segment postings equals a fresh build's."""

from __future__ import annotations

import dataclasses

import bm25s
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.corpus.articles import load_corpus
from retrieval.corpus.chunking import chunk_article
from retrieval.index.folder import load_index
from retrieval.index.keyword import tokenize
from retrieval.index.postings import TERM_BYTES, Deleted, KeywordIndex, Postings, term_key
from retrieval.index.reindex import reindex
from tests.conftest import FakeEmbedder, make_config

WORDS = [f"kata{i}" for i in range(40)] + ["harga", "cabai", "banjir", "gol"]
documents = st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=25), min_size=2)
queries = st.lists(st.sampled_from(WORDS + ["tidakada"]), min_size=1, max_size=6)


def reference_scores(token_lists, query) -> np.ndarray:
    """bm25s's scores: what the keyword side computed before it was incremental."""
    model = bm25s.BM25()
    model.index([list(t) for t in token_lists], show_progress=False)
    ids = [model.vocab_dict[t] for t in query if t in model.vocab_dict]
    if not ids:
        return np.zeros(len(token_lists), dtype=np.float32)
    return np.asarray(model.get_scores_from_ids(ids), dtype=np.float32)


@settings(max_examples=60, deadline=None)
@given(documents, queries)
def test_scores_equal_bm25s(token_lists, query):
    index = KeywordIndex([Postings.build(token_lists)], [Deleted.none()], stemming=False)
    np.testing.assert_allclose(
        index.scores_of(query), reference_scores(token_lists, query), rtol=1e-5, atol=1e-6
    )


def two_segments(token_lists, data) -> tuple[KeywordIndex, list[int]]:
    """The documents split into two segments, some of the first segment's deleted (drawn),
    and the numbers of the deleted ones."""
    cut = data.draw(st.integers(1, len(token_lists) - 1))
    first, second = token_lists[:cut], token_lists[cut:]
    gone = sorted(data.draw(st.sets(st.integers(0, len(first) - 1), max_size=len(first) - 1)))
    postings = Postings.build(first)
    deleted = Deleted.none().plus(postings, np.asarray(gone), [first[i] for i in gone])
    index = KeywordIndex([postings, Postings.build(second)], [deleted, Deleted.none()], False)
    return index, gone


@settings(max_examples=60, deadline=None)
@given(documents, st.data(), queries)
def test_segments_with_deletions_equal_a_fresh_build_of_the_survivors(token_lists, data, query):
    split, gone = two_segments(token_lists, data)
    survivors = [t for i, t in enumerate(token_lists) if i not in gone]
    fresh = KeywordIndex([Postings.build(survivors)], [Deleted.none()], False)
    live = np.setdiff1d(np.arange(len(token_lists)), gone)
    scores = split.scores_of(query)
    np.testing.assert_allclose(scores[live], fresh.scores_of(query), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[live], reference_scores(survivors, query), rtol=1e-5)
    assert not scores[gone].any()
    assert split.known(query) == fresh.known(query)
    for word in set(query):
        assert split.doc_freq(word) == sum(1 for t in survivors if word in t)


def test_long_tokens_are_stored_within_the_width_and_stay_apart():
    a, b = "x" * 200 + "a", "x" * 200 + "b"
    assert len(term_key(a)) == len(term_key(b)) == TERM_BYTES and term_key(a) != term_key(b)
    index = KeywordIndex([Postings.build([[a], [b], [a, "kata1"]])], [Deleted.none()], False)
    assert index.doc_freq(a) == 2 and index.doc_freq(b) == 1
    assert index.scores_of([b]).nonzero()[0].tolist() == [1]


QUERIES = ["harga cabai naik", "banjir jakarta", "gol kemenangan", "kabar baru bandung", "rp80"]


def scores_by_chunk(config) -> dict[str, list[float]]:
    """Every live passage's BM25 score for each query, by chunk id."""
    index = load_index(config.index_path, config)
    rows = index.live_rows()
    ids = [index.chunks[r].chunk_id for r in rows]
    table = np.stack([index.keyword.scores(q)[rows] for q in QUERIES], axis=1)
    assert len(set(ids)) == len(ids)
    return dict(zip(ids, table.tolist(), strict=True))


@pytest.mark.parametrize("stemming", [False, True])
def test_incremental_reindexes_score_as_a_fresh_build(tiny_corpus, tmp_path, stemming):
    def config_at(name):
        config = make_config(tiny_corpus, tmp_path / name / ".index")
        search = dataclasses.replace(config.search, stemming=stemming)
        index = dataclasses.replace(config.index, rebuild_stale_share=0.9)
        return dataclasses.replace(config, search=search, index=index)

    live = config_at("live")
    reindex(live, embedder=FakeEmbedder())
    steps = [
        lambda: (tiny_corpus / "baru.txt").write_text(
            "Kabar Baru\n\nKabar baru dari Bandung soal harga cabai.", "utf-8"
        ),
        lambda: (tiny_corpus / "pasar.txt").write_text(
            (tiny_corpus / "pasar.txt").read_text("utf-8").replace("Rp80.000", "Rp95.000"),
            "utf-8",
        ),
        lambda: (tiny_corpus / "banjir.md").unlink(),
        lambda: (tiny_corpus / "lagi.txt").write_text(
            "Banjir Lagi\n\nBanjir lagi di Jakarta.", "utf-8"
        ),
    ]
    for number, step in enumerate(steps):
        step()
        result = reindex(live, embedder=FakeEmbedder())
        assert result.swapped
        fresh = config_at(f"fresh{number}")
        reindex(fresh, full=True, embedder=FakeEmbedder())
        incremental, rebuilt = scores_by_chunk(live), scores_by_chunk(fresh)
        assert incremental.keys() == rebuilt.keys()
        for chunk_id, row in rebuilt.items():
            np.testing.assert_allclose(incremental[chunk_id], row, rtol=1e-5, atol=1e-6)
    assert len(load_index(live.index_path, live).segments) > 1  # it was incremental


def test_the_chunk_store_returns_the_chunks_of_the_articles(tiny_index, tiny_corpus):
    index = load_index(tiny_index.index_path, tiny_index)
    embedder = FakeEmbedder()
    made = [
        chunk
        for article in load_corpus(tiny_corpus).articles
        for chunk in chunk_article(article, tiny_index.chunking.max_tokens, embedder.count_tokens)
    ]
    assert sorted(index.chunks, key=lambda c: c.chunk_id) == sorted(made, key=lambda c: c.chunk_id)
    assert [index.chunks[r] for r in index.live_rows()] == list(index.chunks)
    with pytest.raises(IndexError):
        index.chunks[index.size]


def test_keyword_tokens_of_a_changed_article_leave_the_document_frequencies(
    tiny_index, tiny_corpus
):
    index = load_index(tiny_index.index_path, tiny_index)
    before = index.keyword.doc_freq("rp80")
    assert before > 0
    path = tiny_corpus / "pasar.txt"
    path.write_text(path.read_text("utf-8").replace("Rp80.000", "Rp95.000"), "utf-8")
    reindex(tiny_index, embedder=FakeEmbedder())
    index = load_index(tiny_index.index_path, tiny_index)
    assert index.keyword.doc_freq("rp80") == 0
    assert index.keyword.doc_freq("rp95") == before
    assert index.keyword.known(tokenize("Rp80.000 Rp95.000")) == 3  # rp95 and 000, twice


@settings(max_examples=80, deadline=None)
@given(documents, st.data(), queries, st.integers(1, 8))
def test_top_and_scores_at_agree_with_every_score(token_lists, data, query, k):
    index, _ = two_segments(token_lists, data)
    hidden = np.asarray(
        sorted(data.draw(st.sets(st.integers(0, index.size - 1), max_size=3))), dtype=np.int64
    )
    every = index.scores_of(query)
    rows = np.asarray(
        data.draw(st.lists(st.integers(0, index.size - 1), max_size=10)), dtype=np.int64
    )
    np.testing.assert_allclose(index.scores_at(query, rows), every[rows], rtol=1e-5, atol=1e-6)
    found, scores = index.top(query, k, hidden)
    np.testing.assert_allclose(scores, every[found], rtol=1e-5, atol=1e-6)
    assert (scores > 0).all() and not np.isin(found, hidden).any()
    assert list(scores) == sorted(scores, reverse=True)
    allowed = every.copy()
    allowed[hidden] = 0
    expected = np.sort(allowed[allowed > 0])[::-1][:k]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)  # the same k best


def test_the_embedded_index_is_the_store_that_answering_uses(tiny_answerer):
    from retrieval.index.folder import IndexData
    from retrieval.index.store import PassageStore

    index = tiny_answerer.index
    assert isinstance(index, IndexData) and isinstance(index, PassageStore)
    assert tiny_answerer.ask("Berapa harga cabai rawit?").quotes
