"""Shared fixtures: a tiny corpus, a deterministic fake embedder, configs and built indexes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from retrieval.config import Config, parse_config
from retrieval.index.keyword import tokenize

from .shared_data import SharedData

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SEED_ARTICLE = ROOT / "corpus" / "korea-utara-politbiro-lawatan-kim-ke-rusia.txt"
EVAL_DIR = SHARED / "eval"


def pytest_configure(config: pytest.Config) -> None:
    # Tests marked needs_shared skip (or, under TANYA_REQUIRE_SHARED, fail) without ../shared.
    config.pluginmanager.register(SharedData(SHARED), "tanya-shared-data")


class FakeEmbedder:
    """Hashes each word into one of `dim` buckets: deterministic, instant, no download.

    Texts sharing words get similar vectors, which is all the retrieval logic needs to be
    exercised; `calls` records every text encoded, so tests can see what was re-embedded.
    """

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.name = f"fake/{dim}"
        self.calls: list[str] = []

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        for word in tokenize(text):
            bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
            vector[bucket % self.dim] += 1.0
        vector[0] += 0.01  # never the zero vector
        return vector / np.linalg.norm(vector)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim))

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.extend(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts])

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


TINY_ARTICLES = {
    "pasar.txt": (
        "Harga Cabai Naik di Pasar Minggu\n\n"
        "Harga cabai rawit di Pasar Minggu naik menjadi Rp80.000 per kilogram pada Senin (3/6). "
        "Pedagang menyebut pasokan dari Jawa Tengah berkurang karena hujan.\n\n"
        "BACA JUGA: Harga Bawang Merah Turun\n\n"
        "Dinas Perdagangan DKI Jakarta berjanji menggelar operasi pasar pekan depan. [ab/cd]\n"
    ),
    "banjir.md": (
        "---\nurl: https://example.org/banjir\npublished: 2024-01-05\n---\n"
        "# Banjir Rendam Ratusan Rumah di Bekasi\n\n"
        "Ratusan rumah warga di Bekasi terendam banjir setinggi satu meter. "
        "(Foto: ANTARA/Budi)\n\n"
        "Banjir terjadi setelah hujan deras mengguyur sejak Sabtu malam. "
        "Warga mengungsi ke masjid terdekat.\n"
    ),
    "sepakbola.txt": (
        "Timnas Indonesia Menang atas Vietnam\n\n"
        "Timnas Indonesia mengalahkan Vietnam dengan skor 3-0 di Stadion Gelora Bung Karno. "
        "Gol dicetak oleh Rizky Ridho dan Marselino Ferdinan.\n"
    ),
}


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A folder of three small articles in the supported text formats."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in TINY_ARTICLES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def seed_corpus(tmp_path: Path) -> Path:
    """A corpus folder holding the shipped seed article only."""
    folder = tmp_path / "seed"
    folder.mkdir()
    shutil.copy(SEED_ARTICLE, folder / SEED_ARTICLE.name)
    return folder


def make_config(corpus: Path, index: Path, **sections) -> Config:
    """A Config for a test: corpus and index paths, plus section overrides as dicts; the
    bot's state file lies beside the index (never in the working folder)."""
    data = {
        "corpus": {"path": str(corpus)},
        "index": {"path": str(index)},
        "state": {"path": str(index.parent / "state.sqlite3")},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data)


@pytest.fixture
def tiny_config(tiny_corpus: Path, tmp_path: Path) -> Config:
    return make_config(tiny_corpus, tmp_path / "index" / ".index")


@pytest.fixture
def tiny_index(tiny_config: Config, fake_embedder: FakeEmbedder) -> Config:
    """The tiny corpus indexed with the fake embedder; returns the config that reads it."""
    from retrieval.index.reindex import reindex

    reindex(tiny_config, embedder=fake_embedder)
    return tiny_config


@pytest.fixture
def tiny_answerer(tiny_index: Config, fake_embedder: FakeEmbedder):
    """An Answerer over the tiny index, with the fake embedder."""
    from retrieval.answering.answer import Answerer

    return Answerer(tiny_index, embedder=fake_embedder)


@pytest.fixture(scope="session")
def real_embedder():
    """The real default model: multilingual-e5-small in ONNX Runtime (loads in under a second)."""
    from retrieval.config import EmbeddingConfig
    from retrieval.models.embedding import make_embedder

    return make_embedder(EmbeddingConfig())


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory, real_embedder) -> Config:
    """The seed article indexed with the real default model (built once per session)."""
    from retrieval.index.reindex import reindex

    root = tmp_path_factory.mktemp("seed-index")
    corpus = root / "corpus"
    corpus.mkdir()
    shutil.copy(SEED_ARTICLE, corpus / SEED_ARTICLE.name)
    config = make_config(corpus, root / ".index")
    reindex(config, embedder=real_embedder)
    return config


@pytest.fixture(scope="session")
def seed_answerer(seed_index: Config, real_embedder):
    from retrieval.answering.answer import Answerer

    return Answerer(seed_index, embedder=real_embedder)


def with_search(config: Config, **values) -> Config:
    """The config with some search settings changed."""
    return dataclasses.replace(config, search=dataclasses.replace(config.search, **values))


def with_evidence_floor(config: Config, floor: float) -> Config:
    """The config declining on retrieval evidence below `floor`, with the reader or without it
    (the fake embedder's cosines are far lower than a real model's)."""
    config = with_search(config, decline_threshold=floor)
    reader = dataclasses.replace(config.reader, evidence_floor=floor)
    return dataclasses.replace(config, reader=reader)


@pytest.fixture
def long_answerer(tmp_path: Path):
    """An index whose passages are each longer than one Telegram message."""
    corpus = tmp_path / "long-corpus"
    corpus.mkdir()
    sentence = "Harga cabai & bawang <naik> lagi di pasar induk Kramat Jati pekan ini. "
    paragraphs = [f"Pasar {i}: " + sentence * 70 for i in range(3)]
    text = "Laporan Pasar yang Sangat Panjang\n\n" + "\n\n".join(paragraphs) + "\n"
    (corpus / "panjang.txt").write_text(text, encoding="utf-8")
    config = make_config(
        corpus,
        tmp_path / "long-index" / ".index",
        embedding={"max_tokens": 4096},
        chunking={"max_tokens": 2000},
        search={"duplicate_similarity": 1.0, "decline_threshold": 0.0},
        # Splitting is what is tested: retrieval alone quotes all three passages.
        reader={"enabled": False},
    )
    embedder = FakeEmbedder()
    from retrieval.answering.answer import Answerer
    from retrieval.index.reindex import reindex

    reindex(config, embedder=embedder)
    return Answerer(config, embedder=embedder)


def slice_answerer(documents: Sequence[dict], root: Path, embedder):
    """An Answerer over a few documents of an evaluation corpus, indexed under root."""
    from retrieval.tools.evaluate import prepare

    corpus = root / "slice.jsonl"
    corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents), "utf-8")
    config = parse_config({"corpus": {"path": str(corpus)}, "index": {"path": str(root / "live")}})
    return prepare(config, corpus, root / "cache", embedder)
