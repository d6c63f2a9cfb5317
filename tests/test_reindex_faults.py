"""Reindexing against bad settings, broken index files and full disks: messages, no tracebacks."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

import bot
from retrieval.config import parse_config
from retrieval.errors import ConfigError, IndexCorruptError, TanyaError
from retrieval.index import folder as index_module
from retrieval.index import reindex as reindex_module
from retrieval.index.folder import load_index
from retrieval.index.reindex import builds_dir, known_files, reindex
from tests.conftest import ROOT, FakeEmbedder


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

    monkeypatch.setattr(faiss, "write_index", write_half_then_fail)
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


def rewrite_keeping_size_and_time(path: Path, damage) -> None:
    """Replace the file with a damaged copy of the same size and modification time, as a
    failing disk would leave it (a new file: a copied index's files may be links)."""
    stat = path.stat()
    data = damage(bytearray(path.read_bytes()))
    assert len(data) == stat.st_size
    path.unlink()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def flip(at: int, bits: int = 0x40):
    """Damage that flips bits of the byte at `at` (negative: from the end)."""

    def damage(data: bytearray) -> bytearray:
        data[at] ^= bits
        return data

    return damage


def settle(config) -> None:
    """Age the corpus files and record them, so a reindex does not read them again (a file
    changed within 2 s of the last reindex is read again whatever its time says)."""
    past = time.time() - 60
    for path in config.corpus_path.iterdir():
        os.utime(path, (past, past))
    reindex(config, embedder=FakeEmbedder())
    assert reindex_module.read_corpus(config, known_files(config.index_path)).articles == ()


def live_state(config) -> tuple[int, int]:
    """The live index's article and passage counts."""
    index = load_index(config.index_path, config, thorough=True)
    return len(index.articles), index.count


def test_verify_rebuilds_every_article_after_damage_that_keeps_size_and_time(
    tiny_index, monkeypatch, capsys, caplog
):
    settle(tiny_index)
    before = live_state(tiny_index)
    path, name = segment_file(tiny_index, "vectors.npy")
    rewrite_keeping_size_and_time(path, flip(-4))
    config = write_config(tiny_index)
    monkeypatch.setattr(reindex_module, "make_embedder", lambda config: FakeEmbedder())
    assert reindex_module.main(["--config", str(config), "--quiet", "--verify"]) == 0
    assert "index updated: 3 added" in capsys.readouterr().out
    assert f"{name} does not match its checksum" in caplog.text
    assert live_state(tiny_index) == before == (3, before[1])  # every article, every passage
    assert reindex_module.main(["--config", str(config), "--quiet"]) == 0
    assert "index already up to date: 0 added, 0 changed, 0 removed, 3 unchanged" in (
        capsys.readouterr().out
    )


NPY_FILES = [
    "vectors.npy",
    "sentence_vectors.npy",
    "sentence_offsets.npy",
    "chunk_offsets.npy",
    "kw_terms.npy",
    "kw_offsets.npy",
    "kw_docs.npy",
    "kw_tf.npy",
    "kw_lengths.npy",
    "passage_terms/words.npy",
    "passage_terms/flags.npy",
    "passage_terms/tokens_ids.npy",
    "passage_terms/names_offsets.npy",
    "sentence_terms/years_ids.npy",
    "sentence_terms/tokens_offsets.npy",
]


@pytest.mark.parametrize("name", [*NPY_FILES, "faiss.index"])
def test_a_damaged_header_is_rebuilt_by_a_plain_reindex(tiny_index, name, monkeypatch, capsys):
    settle(tiny_index)
    before = live_state(tiny_index)
    path, name = segment_file(tiny_index, name)
    rewrite_keeping_size_and_time(path, flip(1))  # the magic: NUMPY, or FAISS's index kind
    with pytest.raises(IndexCorruptError, match=f"cannot be read: {name} is damaged"):
        load_index(tiny_index.index_path, tiny_index, search=False)
    config = write_config(tiny_index)
    monkeypatch.setattr(reindex_module, "make_embedder", lambda config: FakeEmbedder())
    assert reindex_module.main(["--config", str(config), "--quiet"]) == 0
    assert "index updated: 3 added" in capsys.readouterr().out
    assert live_state(tiny_index) == before


def test_a_build_missing_articles_never_goes_live(tiny_index, monkeypatch):
    # As the old repair did: the corpus files were not read again, the live build was unusable.
    settle(tiny_index)
    live = live_build(tiny_index)
    path, _ = segment_file(tiny_index, "vectors.npy")
    rewrite_keeping_size_and_time(path, flip(-4))
    monkeypatch.setattr(reindex_module, "_holds", lambda previous, unchanged: True)
    with pytest.raises(TanyaError, match="would hold 0 of the corpus's 3 articles, so it was not"):
        reindex(tiny_index, embedder=FakeEmbedder(), verify=True)
    assert live_build(tiny_index) == live
    assert sorted(builds_dir(tiny_index.index_path).iterdir()) == [live]


def npy_data(at: int):
    """Damage at byte `at` of a .npy file's data (past its header)."""

    def damage(data: bytearray) -> bytearray:
        header = 10 + int.from_bytes(data[8:10], "little")  # format 1.0: magic, size, header
        return flip(header + at)(data)

    return damage


def every_middle_offset(data: bytearray) -> bytearray:
    """Every int64 offset but the first and the last made far too large (found when read)."""
    header = 10 + int.from_bytes(data[8:10], "little")
    for at in range(header + 8 + 6, len(data) - 8, 8):
        data[at] ^= 0x40
    return data


def every_passage_text(data: bytearray) -> bytearray:
    """A byte that is not UTF-8 in the text of every passage."""
    at = 0
    while (at := data.find(b'"text": "', at)) != -1:
        at += len(b'"text": "')
        data[at] = 0xFF
    return data


@pytest.mark.parametrize(
    "name, damage",
    [
        ("chunks.jsonl", every_passage_text),
        ("sentence_offsets.npy", flip(-1)),  # the last offset, past the sentences
        ("articles.json", flip(0)),
        ("passage_terms/tokens_ids.npy", npy_data(3)),  # the first word id, far too large
        ("chunk_offsets.npy", flip(-1)),
        ("kw_offsets.npy", flip(-1)),
        ("chunk_offsets.npy", every_middle_offset),
        ("sentence_offsets.npy", every_middle_offset),
        ("kw_offsets.npy", every_middle_offset),
        ("passage_terms/tokens_offsets.npy", every_middle_offset),
    ],
)
def test_damage_inside_a_file_is_named_by_ask_and_check(seed_index, tmp_path, capsys, name, damage):
    copy = tmp_path / "copy"
    shutil.copytree(seed_index.index_path.parent, copy, symlinks=True)
    index_path = copy / seed_index.index_path.name
    config = tmp_path / "config.yaml"
    config.write_text(
        f"corpus: {{path: '{seed_index.corpus_path}'}}\nindex: {{path: '{index_path}'}}\n",
        encoding="utf-8",
    )
    (segment,) = (Path(os.path.realpath(index_path)) / "segments").iterdir()
    rewrite_keeping_size_and_time(segment / name, damage)
    for mode in (["--ask", "Siapa yang berjabat tangan dengan Kim Jong Un?"], ["--check"]):
        assert bot.main(["--config", str(config), *mode]) == 1
        said = capsys.readouterr()
        lines = [line for line in (said.out + said.err).splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert f"segments/{segment.name}/{name} " in lines[0] and "damaged" in lines[0]
        assert "Rebuild it with: tanya-reindex" in lines[0]


SURVIVOR = """
import os, pathlib, sys
sys.path.insert(0, {root!r})
from tests.conftest import FakeEmbedder, make_config
from retrieval.answering.answer import Answerer
from retrieval.errors import TanyaError

config = make_config(pathlib.Path({corpus!r}), pathlib.Path({index!r}), reader={{"enabled": False}})
answerer = Answerer(config, embedder=FakeEmbedder())
print("answered", len(answerer.ask("Berapa harga cabai di Pasar Minggu?").quotes), flush=True)
live = pathlib.Path(os.path.realpath(config.index_path))
for path in live.rglob("*"):
    if path.is_file():
        os.truncate(path, 0)  # in place, under the running process: what must never be done
for question in ("Siapa yang mencetak gol untuk Timnas Indonesia?", "Di mana banjir terjadi?"):
    try:
        print("answered", len(answerer.ask(question).quotes), flush=True)
    except TanyaError as exc:
        print("refused:", exc, flush=True)
"""


def test_files_truncated_under_a_running_process_do_not_kill_it(tiny_index):
    script = SURVIVOR.format(
        root=str(ROOT), corpus=str(tiny_index.corpus_path), index=str(tiny_index.index_path)
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])  # not -SIGBUS
    first, *after = done.stdout.splitlines()
    assert first.startswith("answered") and len(after) == 2
    for line in after:  # from the copies in memory, or the damaged file named
        assert line.startswith("answered") or "chunks.jsonl holds a damaged passage" in line
