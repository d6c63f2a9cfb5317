"""Hostile or broken corpus files: each is skipped and named, the rest is indexed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from retrieval.corpus import articles as corpus_module
from retrieval.corpus.articles import load_corpus
from retrieval.index.folder import load_index
from retrieval.index.reindex import main as reindex_main
from retrieval.index.reindex import reindex
from tests.conftest import FakeEmbedder

GOOD = "Judul\n\nIsi berita yang baik."
ALIAS_BOMB = (
    "---\na: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
    )
    + "---\nJudul\n\nIsi.\n"
)


def reasons(corpus) -> dict[str, str]:
    return {Path(p.path).name: p.reason for p in corpus.problems}


def test_front_matter_alias_bomb_is_one_skipped_file(tmp_path):
    (tmp_path / "good.txt").write_text(GOOD, "utf-8")
    (tmp_path / "bomb.txt").write_text(ALIAS_BOMB, "utf-8")
    started = time.perf_counter()
    corpus = load_corpus(tmp_path)
    assert time.perf_counter() - started < 1
    assert [a.doc_id for a in corpus.articles] == ["good"]
    assert reasons(corpus)["bomb.txt"].startswith("front matter refused: b[0]: YAML aliases")


@pytest.mark.parametrize(
    "front, reason",
    [
        ("url: a\nurl: b\n", "front matter refused: url: duplicate key (line 2)"),
        ("tags: " + "[" * 100 + "]" * 100 + "\n", "front matter refused: tags[0]"),
        ("note: " + "x" * 70_000 + "\n", "front matter is longer than 64,000 characters"),
    ],
)
def test_hostile_front_matter_is_refused(tmp_path, front, reason):
    (tmp_path / "x.txt").write_text(f"---\n{front}---\nJudul\n\nIsi.\n", "utf-8")
    assert reasons(load_corpus(tmp_path))["x.txt"].startswith(reason)


def test_deeply_nested_jsonl_line_is_skipped(tmp_path):
    deep = '{"id": "deep", "text": "Isi.", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [json.dumps({"id": "ok", "text": "Isi."}), deep]
    (tmp_path / "bulk.jsonl").write_text("\n".join(lines), "utf-8")
    corpus = load_corpus(tmp_path)
    assert [a.doc_id for a in corpus.articles] == ["ok"]
    assert reasons(corpus)["bulk.jsonl:2"] == "JSON nested too deeply"


def test_files_over_the_size_limit_are_skipped_with_their_size(tmp_path):
    (tmp_path / "good.txt").write_text(GOOD, "utf-8")
    (tmp_path / "huge.txt").write_text("Judul\n\n" + "kata " * 1000, "utf-8")
    corpus = load_corpus(tmp_path, max_file_bytes=1024)
    assert [a.doc_id for a in corpus.articles] == ["good"]
    assert reasons(corpus)["huge.txt"] == "0.00478 MB is over corpus.max_file_mb (0.000977 MB)"


def test_a_named_pipe_is_skipped_without_waiting(tmp_path):
    (tmp_path / "good.txt").write_text(GOOD, "utf-8")
    os.mkfifo(tmp_path / "pipe.txt")
    corpus = load_corpus(tmp_path)
    assert [a.doc_id for a in corpus.articles] == ["good"]
    assert reasons(corpus)["pipe.txt"] == "not a regular file"


@pytest.fixture
def linked_corpus(tmp_path):
    """A corpus with links to a file and a folder outside it, and one to a file inside."""
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "passwd.txt").write_text("Rahasia\n\nKata sandi: hunter2.", "utf-8")
    (outside / "more").mkdir()
    (outside / "more" / "notes.txt").write_text("Catatan\n\nIsi catatan.", "utf-8")
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "sub" / "real.txt").write_text(GOOD, "utf-8")
    (corpus / "inside.txt").symlink_to(corpus / "sub" / "real.txt")
    (corpus / "leak.txt").symlink_to(outside / "passwd.txt")
    (corpus / "leakdir").symlink_to(outside / "more")
    (corpus / "loop").symlink_to(corpus)
    return corpus


def test_links_outside_the_corpus_are_skipped_and_reported(linked_corpus):
    corpus = load_corpus(linked_corpus)
    assert sorted(a.doc_id for a in corpus.articles) == ["inside", "sub/real"]
    found = reasons(corpus)
    assert found["leak.txt"] == found["leakdir"]
    assert found["leak.txt"].startswith("a link to outside the corpus folder")
    assert "hunter2" not in "".join(a.text for a in corpus.articles)


def test_links_outside_are_followed_when_the_config_says_so(linked_corpus):
    corpus = load_corpus(linked_corpus, follow_outside_links=True)
    ids = sorted(a.doc_id for a in corpus.articles)
    assert ids == ["inside", "leak", "leakdir/notes", "sub/real"]
    assert corpus.problems == ()


@pytest.mark.parametrize("follow_outside_links", [False, True])
@pytest.mark.parametrize(
    "link, target",
    [("a", "z"), ("b/link", "z/sub"), ("z/sub/back", "z")],
    ids=["sibling-first-in-order", "nested-first-in-order", "link-inside-its-target"],
)
def test_a_link_to_a_folder_inside_is_read_where_the_folder_is(
    tmp_path, link, target, follow_outside_links
):
    # Before, the first of the two paths in sorted order claimed the folder: adding the link
    # renamed (and re-embedded) every article under it.
    (tmp_path / "z" / "sub").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "z" / "sub" / "art.txt").write_text(GOOD, "utf-8")
    (tmp_path / link).symlink_to(tmp_path / target, target_is_directory=True)
    corpus = load_corpus(tmp_path, follow_outside_links=follow_outside_links)
    assert [a.doc_id for a in corpus.articles] == ["z/sub/art"]
    assert corpus.problems == ()


def test_unreadable_file_and_folder_are_named(tmp_path, monkeypatch):
    (tmp_path / "good.txt").write_text(GOOD, "utf-8")
    (tmp_path / "locked.txt").write_text(GOOD, "utf-8")
    (tmp_path / "closed").mkdir()
    (tmp_path / "closed" / "inside.txt").write_text(GOOD, "utf-8")
    deny_reading(monkeypatch, tmp_path / "locked.txt", tmp_path / "closed")
    corpus = load_corpus(tmp_path)
    assert [a.doc_id for a in corpus.articles] == ["good"]
    found = {p.path: p for p in corpus.problems}
    assert found[str(tmp_path / "locked.txt")].reason == "cannot read (Permission denied)"
    assert found[str(tmp_path / "closed")].reason == "cannot list this folder (Permission denied)"
    assert all(p.unreadable for p in corpus.problems)


def deny_reading(monkeypatch, *paths: Path) -> None:
    """Make these files and folders fail to open or list, as without read permission.

    (chmod does not stop root, who runs these tests in CI containers.)
    """
    denied = {str(p) for p in paths}

    def refuse(path) -> None:
        if str(path) in denied:
            raise PermissionError(13, "Permission denied", str(path))

    real_scandir, real_open = os.scandir, open

    def scandir(path="."):
        refuse(path)
        return real_scandir(path)

    def open_(path, *args, **kwargs):
        refuse(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(corpus_module, "open", open_, raising=False)


def test_articles_that_cannot_be_read_keep_their_last_indexed_version(
    tiny_index, tiny_corpus, monkeypatch, capsys
):
    (tiny_corpus / "daerah").mkdir()
    (tiny_corpus / "daerah" / "gempa.txt").write_text(
        "Gempa Guncang Cianjur\n\nGempa mengguncang Cianjur pada Senin siang.\n", "utf-8"
    )
    reindex(tiny_index, embedder=FakeEmbedder())
    before = load_index(tiny_index.index_path, tiny_index).manifest["documents"]
    deny_reading(monkeypatch, tiny_corpus / "pasar.txt", tiny_corpus / "daerah")
    (tiny_corpus / "sepakbola.txt").unlink()  # really removed: goes
    result = reindex(tiny_index, embedder=FakeEmbedder())
    after = load_index(tiny_index.index_path, tiny_index)
    assert sorted(after.manifest["documents"]) == ["banjir", "daerah/gempa", "pasar"]
    assert after.manifest["documents"]["pasar"] == before["pasar"]
    assert {c.doc_id for c in after.chunks} == {"banjir", "daerah/gempa", "pasar"}
    assert result.stats.removed == 1
    assert sorted(Path(p.path).name for p in result.problems) == ["daerah", "pasar.txt"]
    assert sorted(info.doc_id for info in result.kept) == ["daerah/gempa", "pasar"]
    by_name = {Path(p.path).name: p for p in result.problems}
    assert [i.doc_id for i in result.kept_from(by_name["daerah"])] == ["daerah/gempa"]


def test_reindex_names_each_unreadable_place(
    tiny_index, tiny_corpus, tmp_path, monkeypatch, capsys
):
    config = tmp_path / "config.yaml"
    config.write_text(
        f"corpus: {{path: '{tiny_corpus}'}}\nindex: {{path: '{tiny_index.index_path}'}}\n", "utf-8"
    )
    deny_reading(monkeypatch, tiny_corpus / "pasar.txt")
    monkeypatch.setattr("retrieval.index.reindex.make_embedder", lambda config: FakeEmbedder())
    assert reindex_main(["--config", str(config), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert (
        f"skipped {tiny_corpus / 'pasar.txt'}: cannot read (Permission denied); "
        "its indexed articles are kept as they were"
    ) in err


def reindex_config(tiny_index, tiny_corpus, tmp_path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"corpus: {{path: '{tiny_corpus}'}}\nindex: {{path: '{tiny_index.index_path}'}}\n", "utf-8"
    )
    return config


def test_a_full_reindex_does_not_claim_to_keep_unreadable_articles(
    tiny_index, tiny_corpus, tmp_path, monkeypatch, capsys
):
    config = reindex_config(tiny_index, tiny_corpus, tmp_path)
    deny_reading(monkeypatch, tiny_corpus / "pasar.txt")
    monkeypatch.setattr("retrieval.index.reindex.make_embedder", lambda config: FakeEmbedder())
    assert reindex_main(["--config", str(config), "--quiet", "--full"]) == 0
    err = capsys.readouterr().err
    assert f"skipped {tiny_corpus / 'pasar.txt'}: cannot read (Permission denied)\n" in err
    assert "kept" not in err
    assert "pasar" not in load_index(tiny_index.index_path, tiny_index).manifest["documents"]


def test_an_unusable_index_keeps_nothing_and_says_nothing_is_kept(
    tiny_index, tiny_corpus, tmp_path, monkeypatch, capsys
):
    live = Path(os.path.realpath(tiny_index.index_path))
    (segment,) = (live / "segments").iterdir()
    (segment / "vectors.npy").write_bytes(b"")  # damaged: the reindex rebuilds everything
    config = reindex_config(tiny_index, tiny_corpus, tmp_path)
    deny_reading(monkeypatch, tiny_corpus / "pasar.txt")
    monkeypatch.setattr("retrieval.index.reindex.make_embedder", lambda config: FakeEmbedder())
    assert reindex_main(["--config", str(config), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"skipped {tiny_corpus / 'pasar.txt'}: cannot read (Permission denied)\n" in err
    assert "kept" not in err
    assert "pasar" not in load_index(tiny_index.index_path, tiny_index).manifest["documents"]


def test_an_unreadable_file_never_indexed_is_not_said_to_be_kept(
    tiny_index, tiny_corpus, monkeypatch
):
    (tiny_corpus / "baru.txt").write_text(GOOD, "utf-8")
    deny_reading(monkeypatch, tiny_corpus / "baru.txt")
    result = reindex(tiny_index, embedder=FakeEmbedder())
    (problem,) = result.problems
    assert problem.unreadable and result.kept == () and result.kept_from(problem) == ()
