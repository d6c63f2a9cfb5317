"""A segment written as its passages come: the same files, whatever the step."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from retrieval.index import folder as folder_module
from retrieval.index.folder import load_index
from retrieval.index.postings import Postings
from retrieval.index.reindex import builds_dir, reindex
from retrieval.index.writing import ArrayWriter

from .conftest import FakeEmbedder


def test_array_writer_appends_rows_under_a_header_written_last(tmp_path):
    blocks = [np.random.default_rng(k).random((k + 1, 5), dtype=np.float32) for k in range(4)]
    writer = ArrayWriter(tmp_path / "a.npy", np.float32, 5)
    for block in blocks:
        writer.add(block)
    writer.close()
    loaded = np.load(tmp_path / "a.npy")
    assert loaded.shape == (10, 5) and np.array_equal(loaded, np.concatenate(blocks))
    empty = ArrayWriter(tmp_path / "empty.npy", np.float32, 5)
    empty.close()
    assert np.load(tmp_path / "empty.npy").shape == (0, 5)
    with pytest.raises(ValueError):
        ArrayWriter(tmp_path / "b.npy", np.float32, 5).add(np.zeros((2, 4), np.float32))


def test_postings_hold_each_documents_count_of_each_term():
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(40)]
    documents = [list(rng.choice(words, int(rng.integers(0, 30)))) for _ in range(200)]
    postings = Postings.build(documents)
    expected: dict[bytes, list[tuple[int, int]]] = {}
    for doc, tokens in enumerate(documents):
        for token, count in sorted(Counter(tokens).items()):
            expected.setdefault(token.encode(), []).append((doc, count))
    assert list(postings.terms) == sorted(expected)
    for term, key in enumerate(postings.terms):
        start, end = postings.span(term)
        docs, tf = postings.docs[start:end].tolist(), postings.tf[start:end].tolist()
        found = list(zip(docs, tf, strict=True))
        assert found == expected[key]
    assert postings.lengths.tolist() == [len(t) for t in documents]


def _segment_files(config) -> dict[str, bytes]:
    """Every file of the live build's only segment, by its path inside the segment."""
    build = Path(os.path.realpath(config.index_path))
    (segment,) = (build / "segments").iterdir()
    return {
        p.relative_to(segment).as_posix(): p.read_bytes()
        for p in sorted(segment.rglob("*"))
        if p.is_file()
    }


def test_a_build_in_small_steps_writes_the_same_files(tiny_config, monkeypatch):
    reindex(tiny_config, embedder=FakeEmbedder())
    whole = _segment_files(tiny_config)
    assert len(load_index(tiny_config.index_path, tiny_config).chunks) >= 5
    # Two passages per step and three vectors per FAISS block: every boundary is crossed.
    monkeypatch.setattr(folder_module, "EMBED_STEP", 2)
    monkeypatch.setattr(folder_module, "FAISS_STEP", 3)
    reindex(tiny_config, full=True, embedder=FakeEmbedder())
    stepped = _segment_files(tiny_config)
    assert stepped.keys() == whole.keys()
    assert [name for name in whole if whole[name] != stepped[name]] == []


class _FailingEmbedder(FakeEmbedder):
    """Fails on its second call, after the first step of a build is written."""

    def encode_passages(self, texts):
        if self.calls:
            raise RuntimeError("the encoder failed")
        return super().encode_passages(texts)


def test_a_build_that_fails_midway_leaves_no_partial_folder(tiny_index, tiny_corpus, monkeypatch):
    live = os.path.realpath(tiny_index.index_path)
    monkeypatch.setattr(folder_module, "EMBED_STEP", 1)
    (tiny_corpus / "baru.txt").write_text(
        "Judul baru\n\nParagraf pertama yang baru.\n\nParagraf kedua yang baru.\n", "utf-8"
    )
    with pytest.raises(RuntimeError):
        reindex(tiny_index, embedder=_FailingEmbedder())
    assert os.path.realpath(tiny_index.index_path) == live
    assert [p.name for p in builds_dir(tiny_index.index_path).iterdir()] == [Path(live).name]
    assert len(load_index(tiny_index.index_path, tiny_index).articles) == 3
