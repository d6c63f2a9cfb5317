"""Reindexing: incremental, atomic, locked, and the manifest check on load."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import (
    IndexCorruptError,
    IndexMismatchError,
    IndexMissingError,
    ReindexLockedError,
)
from retrieval.index import segments
from retrieval.index.folder import file_checksums, load_index
from retrieval.index.reindex import builds_dir, main, reindex, reindex_lock

from .conftest import ROOT, FakeEmbedder, make_config


def chunk_docs(config):
    return sorted({c.doc_id for c in load_index(config.index_path, config).chunks})


def test_first_build_embeds_everything(tiny_config, fake_embedder):
    result = reindex(tiny_config, embedder=fake_embedder)
    s = result.stats
    assert (s.added, s.changed, s.removed, s.unchanged) == (3, 0, 0, 0)
    assert s.embedded == s.chunks > 0
    assert result.swapped
    assert tiny_config.index_path.is_symlink()
    assert chunk_docs(tiny_config) == ["banjir", "pasar", "sepakbola"]


def test_no_change_embeds_nothing_and_keeps_the_build(tiny_index):
    before = os.path.realpath(tiny_index.index_path)
    embedder = FakeEmbedder()
    result = reindex(tiny_index, embedder=embedder)
    assert not result.swapped
    assert result.stats.unchanged == 3 and result.stats.embedded == 0
    assert embedder.calls == []
    assert os.path.realpath(tiny_index.index_path) == before


def test_editing_one_article_re_embeds_only_its_chunks(tiny_index, tiny_corpus):
    path = tiny_corpus / "sepakbola.txt"
    path.write_text(path.read_text("utf-8").replace("3-0", "4-1"), "utf-8")
    embedder = FakeEmbedder()
    result = reindex(tiny_index, embedder=embedder)
    assert (result.stats.changed, result.stats.unchanged) == (1, 2)
    assert embedder.calls and all("Cabai" not in t and "Banjir" not in t for t in embedder.calls)
    assert any("4-1" in t for t in embedder.calls)
    index = load_index(tiny_index.index_path, tiny_index)
    texts = " ".join(c.text for c in index.chunks)
    assert "4-1" in texts and "3-0" not in texts


def test_reused_vectors_match_a_full_build(tiny_index, tiny_corpus):
    path = tiny_corpus / "pasar.txt"
    path.write_text(path.read_text("utf-8").replace("Rp80.000", "Rp95.000"), "utf-8")
    reindex(tiny_index, embedder=FakeEmbedder())
    incremental = load_index(tiny_index.index_path, tiny_index)
    reindex(tiny_index, full=True, embedder=FakeEmbedder())
    full = load_index(tiny_index.index_path, tiny_index)

    # The incremental build appends the changed article's passages: rows differ, not content.
    def by_id(index):
        found = {}
        for row in index.live_rows():
            a, b = index.sentence_offsets[row], index.sentence_offsets[row + 1]
            found[index.chunks[row].chunk_id] = (index.vectors[row], index.sentence_vectors[a:b])
        return found

    incremental, full = by_id(incremental), by_id(full)
    assert incremental.keys() == full.keys()
    for chunk_id, (vector, sentences) in full.items():
        np.testing.assert_array_equal(incremental[chunk_id][0], vector)
        np.testing.assert_array_equal(incremental[chunk_id][1], sentences)


def test_deleted_article_is_removed(tiny_index, tiny_corpus):
    (tiny_corpus / "banjir.md").unlink()
    result = reindex(tiny_index, embedder=FakeEmbedder())
    assert result.stats.removed == 1 and result.stats.embedded == 0
    assert chunk_docs(tiny_index) == ["pasar", "sepakbola"]
    assert "banjir" not in load_index(tiny_index.index_path, tiny_index).articles


def test_added_article_is_indexed(tiny_index, tiny_corpus):
    (tiny_corpus / "baru.txt").write_text("Berita Baru\n\nGempa terjadi di Cianjur.", "utf-8")
    embedder = FakeEmbedder()
    result = reindex(tiny_index, embedder=embedder)
    assert (result.stats.added, result.stats.unchanged) == (1, 3)
    assert all("Cianjur" in t for t in embedder.calls)


def test_old_builds_are_pruned(tiny_index, tiny_corpus):
    for i in range(4):
        (tiny_corpus / f"n{i}.txt").write_text(f"Judul {i}\n\nIsi nomor {i}.", "utf-8")
        reindex(tiny_index, embedder=FakeEmbedder())
    builds = list(builds_dir(tiny_index.index_path).iterdir())
    assert len(builds) == 2
    assert Path(os.path.realpath(tiny_index.index_path)) in [b.resolve() for b in builds]


def test_empty_corpus_leaves_the_index_alone(tiny_index, tiny_corpus):
    for f in tiny_corpus.iterdir():
        f.unlink()
    with pytest.raises(Exception, match="no articles could be read"):
        reindex(tiny_index, embedder=FakeEmbedder())
    assert chunk_docs(tiny_index) == ["banjir", "pasar", "sepakbola"]


def test_second_reindex_is_refused_while_one_runs(tiny_index):
    with reindex_lock(tiny_index.index_path):
        with pytest.raises(ReindexLockedError, match=f"pid {os.getpid()}"):
            reindex(tiny_index, embedder=FakeEmbedder())


def test_missing_index_says_what_to_run(tiny_config):
    with pytest.raises(IndexMissingError, match="tanya-reindex"):
        load_index(tiny_config.index_path, tiny_config)


def test_manifest_mismatch_names_each_difference(tiny_index):
    other = dataclasses.replace(
        tiny_index,
        chunking=dataclasses.replace(tiny_index.chunking, max_tokens=50),
        embedding=dataclasses.replace(tiny_index.embedding, model="enpt"),
    )
    with pytest.raises(IndexMismatchError) as info:
        load_index(other.index_path, other)
    message = str(info.value)
    assert "chunking: index has {'max_tokens': 200}, config wants {'max_tokens': 50}" in message
    assert (
        "model: index has 'onnxruntime/multilingual-e5-small', config wants 'onnxruntime/enpt'"
        in message
    )
    assert "tanya-reindex --full" in message


def test_mismatched_index_is_rebuilt_in_full(tiny_index):
    other = dataclasses.replace(
        tiny_index, chunking=dataclasses.replace(tiny_index.chunking, max_tokens=8)
    )
    embedder = FakeEmbedder()
    result = reindex(other, embedder=embedder)
    assert result.stats.embedded == result.stats.chunks
    assert load_index(other.index_path, other).manifest["chunking"] == {"max_tokens": 8}


def test_corrupt_build_says_rebuild(tiny_index):
    live = Path(os.path.realpath(tiny_index.index_path))
    segment_file(live, "vectors.npy").write_bytes(b"garbage")
    with pytest.raises(IndexCorruptError, match="tanya-reindex --full"):
        load_index(tiny_index.index_path, tiny_index)
    reindex(tiny_index, embedder=FakeEmbedder())  # a corrupt index is replaced
    assert chunk_docs(tiny_index) == ["banjir", "pasar", "sepakbola"]


@pytest.mark.parametrize("mapped", [False, True], ids=["copied", "mapped"])
@pytest.mark.parametrize("name", ["vectors.npy", "sentence_vectors.npy"])
def test_truncated_vectors_say_rebuild_and_loaded_ones_are_read_only(
    tiny_index, name, mapped, monkeypatch
):
    if mapped:  # as an archive's large files are
        monkeypatch.setattr(segments, "COPY_UP_TO", 0)
    live = Path(os.path.realpath(tiny_index.index_path))
    loaded = load_index(tiny_index.index_path, tiny_index)
    (segment,) = loaded.segments
    for vectors in (segment.vectors, segment.sentence_vectors):
        assert isinstance(vectors, np.memmap) == mapped and not vectors.flags.writeable
    del loaded, segment, vectors  # a mapped file must not shrink under a reader
    path = segment_file(live, name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # the header survives, rows are missing
    with pytest.raises(IndexCorruptError, match="tanya-reindex --full"):
        load_index(tiny_index.index_path, tiny_index)


def test_cli_prints_a_summary_and_reports_skipped_files(tiny_index, tiny_corpus, capsys):
    (tiny_corpus / "rusak.txt").write_bytes(b"\xff\xfe\x00bad")
    config_file = tiny_corpus.parent / "config.yaml"
    config_file.write_text(
        f"corpus: {{path: {tiny_corpus}}}\nindex: {{path: {tiny_index.index_path}}}\n", "utf-8"
    )
    assert main(["--config", str(config_file), "--quiet"]) == 0
    out = capsys.readouterr()
    assert "index already up to date: 0 added, 0 changed, 0 removed, 3 unchanged" in out.out
    assert "1 files skipped" in out.out
    assert "rusak.txt: not UTF-8 text" in out.err


SLOW_REINDEX = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.conftest import FakeEmbedder, make_config
    from retrieval.index.reindex import reindex
    from pathlib import Path

    class Slow(FakeEmbedder):
        def encode_passages(self, texts):
            time.sleep(0.05)
            return super().encode_passages(texts)

    config = make_config(Path({corpus!r}), Path({index!r}))
    print("started", flush=True)
    reindex(config, full={full!r}, embedder=Slow())
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("full", [True, False], ids=["full", "incremental"])
def test_sigkill_at_any_moment_leaves_a_loadable_index(tiny_index, tiny_corpus, tmp_path, full):
    for i in range(40):
        (tiny_corpus / f"extra{i}.txt").write_text(
            f"Judul {i}\n\n" + "Kalimat panjang nomor satu. Kalimat dua. " * 3, "utf-8"
        )
    script = tmp_path / "slow_reindex.py"
    script.write_text(
        SLOW_REINDEX.format(
            root=str(ROOT), corpus=str(tiny_corpus), index=str(tiny_index.index_path), full=full
        )
    )
    if not full:  # the killed runs add to the live build's segments instead of replacing them
        reindex(tiny_index, embedder=FakeEmbedder())
    for number, delay in enumerate((0.05, 0.4, 0.9, 1.5, 2.2)):
        if not full:  # something new for each run to add, and one article changed
            (tiny_corpus / f"more{number}.txt").write_text(
                f"Judul lain {number}\n\n" + "Kalimat baru yang panjang. Lagi. " * 30, "utf-8"
            )
            path = tiny_corpus / "pasar.txt"
            path.write_text(path.read_text("utf-8") + f" Tambahan {number}.", "utf-8")
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "started"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        index = load_index(tiny_index.index_path, tiny_index)
        assert len(index.chunks) == len(index.vectors) == index.count > 0
        assert sum(s.faiss_index.ntotal for s in index.segments) == index.count
    # The lock died with the process: a new reindex runs and finishes.
    result = reindex(tiny_index, embedder=FakeEmbedder())
    assert result.stats.chunks == len(load_index(tiny_index.index_path, tiny_index).chunks)
    assert len(list(builds_dir(tiny_index.index_path).iterdir())) <= 2


def test_config_paths_are_relative_to_the_config_file(tmp_path, tiny_corpus):
    config_file = tmp_path / "conf" / "config.yaml"
    config_file.parent.mkdir()
    config_file.write_text("corpus: {path: ../corpus}\nindex: {path: idx/.index}\n", "utf-8")
    assert main(["--config", str(config_file), "--quiet"]) == 0
    config = make_config(tiny_corpus, tmp_path / "conf" / "idx" / ".index")
    assert chunk_docs(config) == ["banjir", "pasar", "sepakbola"]


def test_malformed_manifest_is_corrupt_and_rebuilt(tiny_index):
    live = Path(os.path.realpath(tiny_index.index_path))
    (live / "manifest.json").write_text("[1, 2]", "utf-8")
    with pytest.raises(IndexCorruptError, match="malformed manifest"):
        load_index(tiny_index.index_path, tiny_index)
    result = reindex(tiny_index, embedder=FakeEmbedder())
    assert result.swapped and result.stats.embedded == result.stats.chunks


def test_plain_folder_is_refused_before_any_embedding(tiny_index, tiny_corpus):
    live = Path(os.path.realpath(tiny_index.index_path))
    tiny_index.index_path.unlink()
    shutil.copytree(live, tiny_index.index_path)
    (tiny_corpus / "baru.txt").write_text("Judul\n\nIsi baru.", "utf-8")
    embedder = FakeEmbedder()
    with pytest.raises(IndexCorruptError, match="is a plain folder, not a link to a build"):
        reindex(tiny_index, embedder=embedder)
    assert embedder.calls == []


def test_changing_the_faiss_kind_rebuilds_without_re_embedding(tiny_index):
    hnsw = dataclasses.replace(
        tiny_index, index=dataclasses.replace(tiny_index.index, faiss="hnsw")
    )
    embedder = FakeEmbedder()
    result = reindex(hnsw, embedder=embedder)
    assert result.swapped and embedder.calls == []
    index = load_index(hnsw.index_path, hnsw)
    (segment,) = index.segments
    assert index.manifest["segments"][0]["faiss"]["kind"] == "hnsw"
    assert "HNSW" in type(segment.faiss_index).__name__


def test_changing_keyword_settings_rebuilds_bm25_without_re_embedding(tiny_index):
    stemmed = dataclasses.replace(
        tiny_index,
        search=dataclasses.replace(tiny_index.search, stemming=not tiny_index.search.stemming),
    )
    embedder = FakeEmbedder()
    result = reindex(stemmed, embedder=embedder)
    assert result.swapped and embedder.calls == []
    index = load_index(stemmed.index_path, stemmed)
    assert index.manifest["keyword"] == {"stemming": stemmed.search.stemming}
    # A chunking change still re-embeds everything.
    rechunked = dataclasses.replace(
        stemmed, chunking=dataclasses.replace(stemmed.chunking, max_tokens=9)
    )
    result = reindex(rechunked, embedder=embedder)
    assert result.stats.embedded == result.stats.chunks > 0


def test_full_rebuild_reports_changes_against_the_old_index(tiny_index, tiny_corpus):
    (tiny_corpus / "banjir.md").unlink()
    result = reindex(tiny_index, full=True, embedder=FakeEmbedder())
    s = result.stats
    assert (s.added, s.changed, s.removed, s.unchanged) == (0, 0, 1, 2)
    assert s.embedded == s.chunks


def test_no_readable_article_lists_the_reasons(tiny_index, tiny_corpus):
    for f in tiny_corpus.iterdir():
        f.unlink()
    (tiny_corpus / "rusak.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(Exception) as info:
        reindex(tiny_index, embedder=FakeEmbedder())
    assert "rusak.txt: not UTF-8 text" in str(info.value)


def test_mismatch_message_names_the_config_file(tiny_index, tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(
        f"corpus: {{path: {tiny_index.corpus_path}}}\n"
        f"index: {{path: {tiny_index.index_path}}}\nchunking: {{max_tokens: 50}}\n",
        "utf-8",
    )
    from retrieval.config import load_config

    with pytest.raises(IndexMismatchError, match=f"tanya-reindex --config {path} --full"):
        load_index(tiny_index.index_path, load_config(path))


def _approximate(corpus: Path, index: Path, stale_share: float, kind: str = "hnsw"):
    config = make_config(corpus, index)
    settings = dataclasses.replace(config.index, faiss=kind, rebuild_stale_share=stale_share)
    return dataclasses.replace(config, index=settings)


def _neighbour_ids(index) -> list[list[str]]:
    """Each passage's ranking of every live passage, by chunk id, through the dense search."""
    return [
        [index.chunks[r].chunk_id for r in index.dense_search(np.asarray(vector), index.count + 5)]
        for vector in index.vectors
    ]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_a_reindex_adds_a_segment_and_hides_deleted_rows(tiny_corpus, tmp_path, kind):
    if kind == "ivf":  # IVF needs enough passages to train its lists on
        for i in range(70):
            (tiny_corpus / f"kabar{i}.txt").write_text(f"Kabar {i}\n\nBerita nomor {i}.", "utf-8")
    config = _approximate(tiny_corpus, tmp_path / "a" / ".index", stale_share=0.9, kind=kind)
    reindex(config, embedder=FakeEmbedder())
    first = load_index(config.index_path, config)
    (old,) = first.segments
    path = tiny_corpus / "sepakbola.txt"
    path.write_text(path.read_text("utf-8").replace("3-0", "4-1"), "utf-8")
    (tiny_corpus / "banjir.md").unlink()
    (tiny_corpus / "baru.txt").write_text("Judul Baru\n\nKabar baru dari Bandung.", "utf-8")
    result = reindex(config, embedder=FakeEmbedder())
    assert (result.stats.added, result.stats.changed, result.stats.removed) == (1, 1, 1)

    index = load_index(config.index_path, config)
    kept, new = index.segments
    # The old segment is the same files (hard links), with the stale passages marked deleted.
    assert kept.id == old.id
    assert (kept.folder / "vectors.npy").stat().st_ino == (old.folder / "vectors.npy").stat().st_ino
    assert type(kept.faiss_index).__name__ == {"hnsw": "IndexHNSWFlat", "ivf": "IndexIVFFlat"}[kind]
    assert new.count == result.stats.embedded
    deleted = len(index.deleted[0].docs)
    assert deleted == index.size - index.count > 0
    assert index.manifest["segments"][0]["deleted"] == deleted
    counts = [e["articles"] for e in index.manifest["segments"]]
    assert counts[1] == 2 and sum(counts) == len(index.articles) == len(index.manifest["documents"])
    index.check()  # every part reads, and each segment holds the articles its entry says
    # The same rankings as a fresh build of the same corpus, with no stale passage in them.
    fresh = _approximate(tiny_corpus, tmp_path / "f" / ".index", stale_share=0.9, kind=kind)
    reindex(fresh, embedder=FakeEmbedder())
    rebuilt = load_index(fresh.index_path, fresh)
    assert len(rebuilt.segments) == 1 and rebuilt.size == rebuilt.count
    ids = sorted(c.chunk_id for c in index.chunks)
    assert sorted(c.chunk_id for c in rebuilt.chunks) == ids
    rankings = _neighbour_ids(index)
    assert rankings == _neighbour_ids(rebuilt)
    assert all(sorted(r) == ids for r in rankings.values())
    assert not any("banjir" in c.chunk_id or "3-0" in c.text for c in index.chunks)


def _neighbour_ids(index) -> dict[str, list[str]]:
    """Each live passage's ranking of every live passage, by chunk id, through dense search."""
    return {
        index.chunks[row].chunk_id: [
            index.chunks[r].chunk_id
            for r in index.dense_search(np.asarray(index.vectors[row]), index.count + 5)
        ]
        for row in index.live_rows()
    }


def test_a_segment_with_too_many_deleted_rows_is_rewritten(tiny_corpus, tmp_path):
    config = _approximate(tiny_corpus, tmp_path / "a" / ".index", stale_share=0.1)
    reindex(config, embedder=FakeEmbedder())
    path = tiny_corpus / "sepakbola.txt"
    path.write_text(path.read_text("utf-8").replace("3-0", "4-1"), "utf-8")
    embedder = FakeEmbedder()
    result = reindex(config, embedder=embedder)
    assert result.stats.changed == 1
    index = load_index(config.index_path, config)
    (segment,) = index.segments
    assert index.size == index.count == segment.faiss_index.ntotal
    # Only the changed article was embedded; the others' vectors came from the old segment.
    assert result.stats.embedded == sum(1 for c in index.chunks if c.doc_id == "sepakbola")


def test_a_build_without_article_counts_is_counted(tiny_index, tiny_corpus):
    live = Path(os.path.realpath(tiny_index.index_path))
    manifest = json.loads((live / "manifest.json").read_text("utf-8"))
    for entry in manifest["segments"]:
        del entry["articles"]  # as a build was written before the counts were kept
    (live / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    (tiny_corpus / "pasar.txt").unlink()
    (tiny_corpus / "baru.txt").write_text("Judul Baru\n\nKabar baru dari Bandung.", "utf-8")
    keep = dataclasses.replace(tiny_index.index, rebuild_stale_share=0.9)  # not rewritten
    config = dataclasses.replace(tiny_index, index=keep)
    result = reindex(config, embedder=FakeEmbedder())
    assert (result.stats.added, result.stats.removed) == (1, 1)
    index = load_index(config.index_path, config)
    assert [e["articles"] for e in index.manifest["segments"]] == [2, 1]
    index.check()


def test_small_segments_are_merged(tiny_corpus, tmp_path, monkeypatch):
    from retrieval.index import folder as index_module

    monkeypatch.setattr(index_module, "MAX_SEGMENTS", 3)
    config = make_config(tiny_corpus, tmp_path / "a" / ".index")
    reindex(config, embedder=FakeEmbedder())
    for i in range(5):
        (tiny_corpus / f"kabar{i}.txt").write_text(f"Kabar {i}\n\nBerita nomor {i}.", "utf-8")
        result = reindex(config, embedder=FakeEmbedder())
        assert result.stats.embedded == 1
        index = load_index(config.index_path, config)
        assert len(index.segments) == min(i + 2, 3)
        index.check()
    assert sorted(index.articles) == sorted(
        ["banjir", "pasar", "sepakbola"] + [f"kabar{i}" for i in range(5)]
    )
    assert {c.doc_id for c in index.chunks} == set(index.articles)


@pytest.mark.parametrize(
    "corrupt",
    [lambda docs: docs + 1000, lambda docs: docs[:-1]],
    ids=["outside", "short"],
)
def test_deleted_rows_that_do_not_fit_say_rebuild(tiny_corpus, tmp_path, corrupt):
    config = _approximate(tiny_corpus, tmp_path / "a" / ".index", stale_share=0.9)
    reindex(config, embedder=FakeEmbedder())
    (tiny_corpus / "banjir.md").unlink()
    reindex(config, embedder=FakeEmbedder())
    live = Path(os.path.realpath(config.index_path))
    (path,) = (live / "deleted").iterdir()
    with np.load(path) as data:
        arrays = dict(data)
    arrays["docs"] = corrupt(arrays["docs"])
    with open(path, "wb") as out:
        np.savez(out, **arrays)
    reseal(live)
    with pytest.raises(IndexCorruptError, match="inconsistent|damaged"):
        load_index(config.index_path, config)


def test_word_sets_are_saved_with_the_build(tiny_index):
    from retrieval.index.folder import sentence_texts
    from retrieval.index.terms import TermTable

    saved = load_index(tiny_index.index_path, tiny_index)
    assert saved.passage_terms.count == saved.count
    assert saved.sentence_terms.count == len(saved.sentence_vectors)
    chunks = list(saved.chunks)
    made = TermTable.build([c.text for c in chunks])
    rows = np.arange(saved.count)
    question = frozenset({"harga", "cabai", "2024"})
    for a, b in zip(
        saved.passage_terms.features(rows, question), made.features(rows, question), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert TermTable.build(sentence_texts(chunks)).count == saved.sentence_terms.count


@pytest.mark.parametrize("name", ["passage_terms", "sentence_terms"])
def test_corrupt_word_sets_say_rebuild(tiny_index, name):
    live = Path(os.path.realpath(tiny_index.index_path))
    segment_file(live, name, "tokens_ids.npy").write_bytes(b"not an npy file")
    with pytest.raises(IndexCorruptError, match="tanya-reindex --full"):
        load_index(tiny_index.index_path, tiny_index)


def test_word_sets_of_other_texts_say_rebuild(tiny_index):
    from retrieval.index.terms import TermTable

    live = Path(os.path.realpath(tiny_index.index_path))
    TermTable.build(["satu teks saja"]).save(segment_file(live, "passage_terms"))
    reseal(live)
    wrong = r"passage_terms/tokens_offsets\.npy is damaged \(has shape \(2,\) where \(6,\)"
    with pytest.raises(IndexCorruptError, match=wrong):
        load_index(tiny_index.index_path, tiny_index)


def segment_file(live: Path, *name: str) -> Path:
    """A file of the build's only segment."""
    (segment,) = (live / "segments").iterdir()
    return segment.joinpath(*name)


def reseal(folder: Path) -> None:
    """Record the build's files in its manifest again, as if its writer had made them so."""
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    manifest["files"] = file_checksums(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest), "utf-8")


def _age(corpus: Path, seconds: float = 60) -> None:
    """Set every corpus file's modification time this far in the past."""
    past = time.time() - seconds
    for path in corpus.rglob("*"):
        os.utime(path, (past, past))


def _reads(monkeypatch) -> list[str]:
    """The corpus files read from now on, by name."""
    import retrieval.corpus.articles as corpus_module

    read, real = [], corpus_module.load_file

    def load_file(path, *args, **kwargs):
        read.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(corpus_module, "load_file", load_file)
    return read


def test_unchanged_files_are_not_read_again(tiny_corpus, tmp_path, monkeypatch):
    _age(tiny_corpus)
    config = make_config(tiny_corpus, tmp_path / "a" / ".index")
    reindex(config, embedder=FakeEmbedder())
    read = _reads(monkeypatch)
    assert not reindex(config, embedder=FakeEmbedder()).swapped
    assert read == []
    path = tiny_corpus / "pasar.txt"
    path.write_text(path.read_text("utf-8").replace("Rp80.000", "Rp95.000"), "utf-8")
    past = time.time() - 30
    os.utime(path, (past, past))  # a new time, long enough ago to be trusted
    result = reindex(config, embedder=FakeEmbedder())
    assert read == ["pasar.txt"] and result.stats.changed == 1 and result.stats.unchanged == 2
    index = load_index(config.index_path, config)
    assert "Rp95.000" in " ".join(c.text for c in index.chunks)
    # --full reads everything again.
    read.clear()
    reindex(config, full=True, embedder=FakeEmbedder())
    assert sorted(read) == ["banjir.md", "pasar.txt", "sepakbola.txt"]


def test_a_change_that_keeps_size_and_time_right_after_a_reindex_is_seen(
    tiny_corpus, tmp_path, monkeypatch
):
    config = make_config(tiny_corpus, tmp_path / "a" / ".index")
    path = tiny_corpus / "pasar.txt"
    reindex(config, embedder=FakeEmbedder())
    stat = path.stat()
    path.write_text(path.read_text("utf-8").replace("Rp80.000", "Rp90.000"), "utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same time
    result = reindex(config, embedder=FakeEmbedder())
    assert result.stats.changed == 1
    assert "Rp90.000" in " ".join(c.text for c in load_index(config.index_path, config).chunks)


def test_a_damaged_record_of_corpus_files_reads_every_file(tiny_corpus, tmp_path, monkeypatch):
    _age(tiny_corpus)
    config = make_config(tiny_corpus, tmp_path / "a" / ".index")
    reindex(config, embedder=FakeEmbedder())
    live = Path(os.path.realpath(config.index_path))
    (live / "corpus_files.json").unlink()
    (live / "corpus_files.json").write_text("{not json", "utf-8")  # a record, not the index
    read = _reads(monkeypatch)
    assert not reindex(config, embedder=FakeEmbedder()).swapped
    assert sorted(read) == ["banjir.md", "pasar.txt", "sepakbola.txt"]


def test_a_no_change_reindex_records_the_files_it_had_to_read(tiny_corpus, tmp_path, monkeypatch):
    config = make_config(tiny_corpus, tmp_path / "a" / ".index")
    reindex(config, embedder=FakeEmbedder())  # the files were just written: too new to trust
    _age(tiny_corpus)  # new times, same texts
    read = _reads(monkeypatch)
    assert not reindex(config, embedder=FakeEmbedder()).swapped
    assert sorted(read) == ["banjir.md", "pasar.txt", "sepakbola.txt"]
    read.clear()
    assert not reindex(config, embedder=FakeEmbedder()).swapped
    assert read == []  # recorded by the run before, though it changed nothing
    load_index(config.index_path, config, thorough=True)  # the record is not part of the index
