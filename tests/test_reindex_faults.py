"""Reindexing against bad settings, broken index files and full disks: messages, no tracebacks."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import bot
from retrieval.config import parse_config
from retrieval.errors import ConfigError, IndexCorruptError, TanyaError
from retrieval.index import folder as index_module
from retrieval.index import reindex as reindex_module
from retrieval.index.folder import load_index
from retrieval.index.reindex import builds_dir, reindex
from tests.conftest import FakeEmbedder


def test_more_ivf_lists_than_chunks_is_a_message(tiny_corpus, tmp_path, monkeypatch, capsys):
    for i in range(70):  # IVF trains only from 64 chunks up
        (tiny_corpus / f"kabar{i}.txt").write_text(f"Kabar {i}\n\nBerita nomor {i}.", "utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"corpus: {{path: '{tiny_corpus}'}}\n"
        f"index: {{path: '{tmp_path / 'ix' / '.index'}', faiss: ivf, ivf_nlist: 5000}}\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(reindex_module, "make_embedder", lambda config: FakeEmbedder())
    assert reindex_module.main(["--config", str(config), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "index.ivf_nlist: 5000 lists need at least 5000 chunks" in err
    assert "the corpus has 75" in err


def test_more_ivf_lists_than_chunks_is_refused_before_any_embedding(tiny_corpus, tmp_path):
    for i in range(70):
        (tiny_corpus / f"kabar{i}.txt").write_text(f"Kabar {i}\n\nBerita nomor {i}.", "utf-8")
    config = parse_config(
        {
            "corpus": {"path": str(tiny_corpus)},
            "index": {"path": str(tmp_path / "ix" / ".index"), "faiss": "ivf", "ivf_nlist": 5000},
        }
    )
    embedder = FakeEmbedder()
    with pytest.raises(ConfigError, match="index.ivf_nlist: 5000 lists need at least 5000"):
        reindex(config, embedder=embedder)
    assert embedder.calls == []


def live_build(config) -> Path:
    return Path(os.path.realpath(config.index_path))


def segment_file(config, name: str) -> tuple[Path, str]:
    """A file of the live build's only segment, and its name in messages."""
    (segment,) = (live_build(config) / "segments").iterdir()
    return segment / name, f"segments/{segment.name}/{name}"


def corpus_changed(corpus: Path) -> None:
    (corpus / "gempa.txt").write_text("Gempa Guncang Cianjur\n\nGempa di Cianjur.\n", "utf-8")


@pytest.mark.parametrize(
    "name, damage",
    [
        ("vectors.npy", lambda data: b""),
        ("sentence_vectors.npy", lambda data: data[: len(data) // 2]),
        ("passage_terms/tokens_ids.npy", lambda data: data[:100]),
        ("sentence_offsets.npy", lambda data: data[:-8] + bytes([data[-8] ^ 1]) + data[-7:]),
        ("chunks.jsonl", lambda data: data.replace(b"Rp80.000", b"Rp90.000")),
        ("vectors.npy", lambda data: data[:-4] + bytes([data[-4] ^ 0x40]) + data[-3:]),
    ],
    ids=["empty", "truncated", "truncated-npz", "flipped-offset", "edited-text", "flipped-vector"],
)
def test_a_damaged_file_is_named_and_a_plain_reindex_repairs_it(tiny_index, name, damage):
    path, name = segment_file(tiny_index, name)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(IndexCorruptError, match=f"is damaged: {name} ") as info:
        load_index(tiny_index.index_path, tiny_index)
    assert "Rebuild it with: tanya-reindex" in str(info.value)
    result = reindex(tiny_index, embedder=FakeEmbedder())  # plain, not --full
    assert result.swapped
    repaired = load_index(tiny_index.index_path, tiny_index)
    assert "Rp80.000" in "".join(c.text for c in repaired.chunks)


@pytest.mark.parametrize("thorough", [False, True])
def test_a_file_that_cannot_be_opened_is_unreadable_not_damaged(tiny_index, monkeypatch, thorough):
    path, name = segment_file(tiny_index, "vectors.npy")
    real_open, real_load = open, np.load

    def open_(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    def load(file, *args, **kwargs):
        open_(file)
        return real_load(file, *args, **kwargs)

    # Hashed when the file looks altered or when asked to be thorough; else opened to be read.
    monkeypatch.setattr(index_module, "open", open_, raising=False)
    monkeypatch.setattr(np, "load", load)
    with pytest.raises(IndexCorruptError) as info:
        load_index(tiny_index.index_path, tiny_index, thorough=thorough)
    assert f"{name} cannot be read (Permission denied)" in str(info.value)
    assert "checksum" not in str(info.value)


@pytest.mark.parametrize("name", ["vectors.npy", "sentence_terms/words.npy", "faiss.index"])
def test_a_build_without_checksums_still_names_a_damaged_file(tiny_index, name):
    folder = live_build(tiny_index)
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    del manifest["files"]  # as written before checksums were kept
    (folder / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    path, name = segment_file(tiny_index, name)
    path.write_bytes(b"")
    with pytest.raises(IndexCorruptError, match=f"cannot be read: {name} is damaged"):
        load_index(tiny_index.index_path, tiny_index)


def test_ask_and_check_report_a_damaged_index_without_traceback(seed_index, tmp_path, capsys):
    # A copy of the session's seed index (built with the real model), damaged.
    copy = tmp_path / "copy"
    shutil.copytree(seed_index.index_path.parent, copy, symlinks=True)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"corpus: {{path: '{seed_index.corpus_path}'}}\n"
        f"index: {{path: '{copy / seed_index.index_path.name}'}}\n",
        encoding="utf-8",
    )
    live = Path(os.path.realpath(copy / seed_index.index_path.name))
    (segment,) = (live / "segments").iterdir()
    (segment / "vectors.npy").unlink()  # the copy's file may be a link to the session's
    (segment / "vectors.npy").write_bytes(b"")
    for mode in (["--ask", "Siapa Kim Jong Un?"], ["--check"]):
        assert bot.main(["--config", str(config), *mode]) == 1
        err = capsys.readouterr().err
        assert "is damaged: segments/" in err and "/vectors.npy is 0 bytes" in err
        assert "Traceback" not in err


def test_a_full_disk_leaves_no_partial_build_and_the_old_index(tiny_index, monkeypatch, capsys):
    before = live_build(tiny_index)
    corpus_changed(tiny_index.corpus_path)

    def write_half_then_fail(index, path):
        Path(path).write_bytes(b"\0" * 100)
        raise RuntimeError("Error: 'ret == (size)' failed: write error: No space left on device")

    monkeypatch.setattr(index_module.faiss, "write_index", write_half_then_fail)
    with pytest.raises(TanyaError, match="cannot write the new index in .*No space left"):
        reindex(tiny_index, embedder=FakeEmbedder())
    assert live_build(tiny_index) == before
    assert sorted(builds_dir(tiny_index.index_path).iterdir()) == [before]
    load_index(tiny_index.index_path, tiny_index)  # still serves

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(index_module, "_write_json", no_space)
    config = tiny_index.source or write_config(tiny_index)
    monkeypatch.setattr(reindex_module, "make_embedder", lambda config: FakeEmbedder())
    assert reindex_module.main(["--config", str(config), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("tanya-reindex: cannot write the new index in ") and "Traceback" not in err
    )
    assert sorted(builds_dir(tiny_index.index_path).iterdir()) == [before]


def write_config(config) -> Path:
    path = config.index_path.parent / "config.yaml"
    path.write_text(
        f"corpus: {{path: '{config.corpus_path}'}}\nindex: {{path: '{config.index_path}'}}\n",
        encoding="utf-8",
    )
    return path


def test_damage_that_keeps_size_and_time_is_found_by_verify(tiny_index, monkeypatch, capsys):
    path, name = segment_file(tiny_index, "vectors.npy")
    stat = path.stat()
    data = path.read_bytes()
    path.write_bytes(data[:-4] + bytes([data[-4] ^ 0x40]) + data[-3:])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as a failing disk would leave it
    load_index(tiny_index.index_path, tiny_index)  # not hashed at every start
    with pytest.raises(IndexCorruptError, match=f"is damaged: {name} does not match"):
        load_index(tiny_index.index_path, tiny_index, thorough=True)
    config = write_config(tiny_index)
    monkeypatch.setattr(reindex_module, "make_embedder", lambda config: FakeEmbedder())
    assert reindex_module.main(["--config", str(config), "--quiet"]) == 0
    assert "index already up to date" in capsys.readouterr().out  # a plain reindex trusts it
    assert reindex_module.main(["--config", str(config), "--quiet", "--verify"]) == 0
    assert "index updated: 3 added" in capsys.readouterr().out  # rebuilt in full
    load_index(tiny_index.index_path, tiny_index, thorough=True)
