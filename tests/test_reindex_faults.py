"""Reindexing against bad settings, broken index files and full disks: messages, no tracebacks."""

from __future__ import annotations

from retrieval import reindex as reindex_module
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
