"""The bench's archive section: a synthetic news archive through the real reindex path.

It writes N passages as article files (ten paragraphs each, one to three sentences per
paragraph, words from a Zipf-distributed vocabulary), indexes them with `reindex` and a
synthetic encoder (vectors drawn from the bench's model of real passage vectors), then times,
each as a new process: the full build itself (with its peak RSS), `bot.py --ask` from start
to its first printed line, and `tanya-reindex` after adding, changing and removing one article
and with nothing changed. Keyword and dense search are timed on the built index in this
process. The real encoder's speed is measured on a sample of the archive's passages, embedded
as a build embeds them, for the time the whole archive would take with it.

    python -m retrieval.tools.bench_archive CONFIG VECTOR_MODEL DIM

is the build's process: the reindex of the archive CONFIG describes with the synthetic
encoder (VECTOR_MODEL: the bench's pickled vector model).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import Config, load_config
from ..errors import TanyaError
from ..index.folder import _embed, article_chunks, load_index
from ..index.keyword import tokenize
from ..index.reindex import reindex
from ..models.embedding import Embedder
from .measuring import (
    ROOT,
    measure_cold_start,
    measured,
    peak_rss_kb,
    percentiles,
    pseudo_words,
    write_config,
)

PARAGRAPHS = 10
QUESTION = "Kapan rapat itu digelar dan siapa yang memimpinnya?"


class SyntheticEncoder:
    """Vectors from the bench's vector model instead of a neural encoder: each call draws as
    many vectors as texts, seeded by the texts, so a build is repeatable."""

    def __init__(self, model, dim: int):
        self.model, self.dim, self.name = model, dim, "synthetic"

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        seed = hashlib.blake2b(texts[0].encode(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(seed, "big") + len(texts))
        return self.model.sample(len(texts), rng)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_passages(list(texts))

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def _sentences(words: np.ndarray, rng: np.random.Generator, count: int) -> list[str]:
    """`count` paragraphs of one to three sentences of 6-26 words each."""
    per = rng.integers(1, 4, count)
    lengths = rng.integers(6, 27, int(per.sum()))
    weights = 1.0 / np.arange(1, len(words) + 1) ** 1.07
    ids = rng.choice(len(words), size=int(lengths.sum()), p=weights / weights.sum())
    cuts = np.concatenate([[0], np.cumsum(lengths)])
    sentences = [
        " ".join(words[ids[a:b]]).capitalize() + "."
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    firsts = np.concatenate([[0], np.cumsum(per)])
    return [" ".join(sentences[a:b]) for a, b in zip(firsts[:-1], firsts[1:], strict=True)]


def _article(number: int, paragraphs: Sequence[str]) -> str:
    """An article file's text: a title line and its paragraphs."""
    return f"Kabar arsip nomor {number}\n\n" + "\n\n".join(paragraphs) + "\n"


def article_text(words: np.ndarray, rng: np.random.Generator, number: int) -> str:
    """One article file of PARAGRAPHS new paragraphs."""
    return _article(number, _sentences(words, rng, PARAGRAPHS))


def write_archive(corpus: Path, passages: int, rng: np.random.Generator, words: np.ndarray):
    """Write passages / PARAGRAPHS article files, a thousand per folder."""
    articles = max(1, passages // PARAGRAPHS)
    bodies = _sentences(words, rng, articles * PARAGRAPHS)
    for k in range(articles):
        folder = corpus / f"{k // 1000:04d}"
        if k % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        text = _article(k, bodies[k * PARAGRAPHS : (k + 1) * PARAGRAPHS])
        (folder / f"a{k}.txt").write_text(text, "utf-8")
    return articles


def _run_measured(command: list[str], what: str) -> tuple[float, float, str]:
    """Run a command as a new process: its seconds (end to end), peak RSS in MB and output."""
    wrapped, rss = measured(command)
    started = time.perf_counter()
    proc = subprocess.run(wrapped, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak = peak_rss_kb(rss)
    if proc.returncode != 0:
        raise TanyaError(f"{what} failed: {proc.stderr.strip()[-500:]}")
    return seconds, round(peak / 1024, 1), proc.stdout.strip()


def _reindex_process(config_file: Path) -> dict:
    """`tanya-reindex` end to end as a new process, with its peak RSS."""
    command = [
        sys.executable,
        "-m",
        "retrieval.index.reindex",
        "--config",
        str(config_file),
        "--quiet",
    ]
    seconds, peak_mb, out = _run_measured(command, f"`{' '.join(command)}`")
    return {
        "seconds": round(seconds, 3),
        "peak_rss_mb": peak_mb,
        "summary": out.splitlines()[-1] if out else "",
    }


def _build_process(config_file: Path, model_file: Path, dim: int) -> dict:
    """The full build through reindex with the synthetic encoder, as a new process: its
    seconds (end to end) and peak RSS."""
    command = [sys.executable, "-m", "retrieval.tools.bench_archive"]
    command += [str(config_file), str(model_file), str(dim)]
    seconds, peak_mb, out = _run_measured(command, "the archive's build")
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": peak_mb,
        "summary": json.loads(out.splitlines()[-1]),  # the build's stats
    }


def _encoder_rate(corpus: Path, config: Config, embedder: Embedder, sample: int) -> dict:
    """Passages per second of the encoder over the first `sample` passages of the archive,
    embedded as a build embeds them (with their sentences when index.sentence_vectors); the
    model is loaded and warmed up first, on other passages."""
    from ..corpus.articles import load_corpus

    chunks = []
    for article in load_corpus(corpus / "0000").articles:
        chunks += article_chunks(article, config, embedder)
        if len(chunks) >= sample + 16:
            break
    if len(chunks) < sample + 16:
        sample = max(1, len(chunks) - 16)
    sentences = config.index.sentence_vectors
    _embed(chunks[-16:], embedder, None, sentences)
    started = time.perf_counter()
    _embed(chunks[:sample], embedder, None, sentences)
    seconds = time.perf_counter() - started
    return {"passages": sample, "seconds": round(seconds, 2), "per_s": round(sample / seconds, 1)}


def _folder_mb(folder: Path) -> float:
    """Disk use of a folder, counting each hard-linked file once."""
    seen, total = set(), 0
    for path in folder.rglob("*"):
        info = path.lstat()
        if path.is_file() and (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return round(total / 2**20, 1)


def measure_archive(
    n: int,
    config: Config,
    vector_model,
    dim: int,
    workdir: Path,
    cold_runs: int = 3,
    queries: int = 200,
    seed: int = 0,
    embedder: Embedder | None = None,
    sample: int = 500,
) -> dict:
    """Build an n-passage archive index through reindex and time what the issue of scale asks;
    with an `embedder`, its speed on `sample` of the archive's passages too."""
    rng = np.random.default_rng(seed)
    corpus, index_path = workdir / "archive" / "corpus", workdir / "archive" / ".index"
    words = pseudo_words(min(50_000, max(1000, n // 2)), rng)
    started = time.perf_counter()
    articles = write_archive(corpus, n, rng, words)
    written = time.perf_counter() - started
    archive = dataclasses.replace(
        config,
        corpus=dataclasses.replace(config.corpus, path=str(corpus.resolve())),
        index=dataclasses.replace(config.index, path=str(index_path.resolve())),
    )
    config_file = write_config(archive, workdir / "archive.yaml")
    encoder_rate = _encoder_rate(corpus, archive, embedder, sample) if embedder else None
    model_file = workdir / "vector_model.pickle"
    model_file.write_bytes(pickle.dumps(vector_model))
    build = _build_process(config_file, model_file, dim)
    time.sleep(2.1)  # files written just before the build are then settled (see load_corpus)
    steps = {"settle": _reindex_process(config_file)}  # reads the last-written files once
    cold = measure_cold_start(config_file, runs=cold_runs, question=QUESTION)
    steps["no_change"] = _reindex_process(config_file)
    new = corpus / "baru" / "tambahan.txt"
    new.parent.mkdir()
    new.write_text(article_text(words, rng, articles), "utf-8")
    steps["add_one"] = _reindex_process(config_file)
    changed = corpus / "0000" / "a1.txt"
    changed.write_text(article_text(words, rng, 1), "utf-8")
    steps["change_one"] = _reindex_process(config_file)
    (corpus / "0000" / "a2.txt").unlink()
    steps["remove_one"] = _reindex_process(config_file)
    steps["no_change_after"] = _reindex_process(config_file)

    index = load_index(index_path, archive)
    rows = index.live_rows()
    picks = rng.choice(rows, queries)
    tokens = [
        list(rng.choice(tokenize(index.chunks[int(r)].text), 4, replace=False)) for r in picks
    ]
    for query in tokens[:20]:  # warm-up: the first questions touch cold pages
        index.keyword.top(query, config.search.candidates)
    times = []
    for query in tokens:
        begun = time.perf_counter()
        index.keyword.top(query, config.search.candidates)
        times.append(time.perf_counter() - begun)
    keyword = percentiles(times)
    probes = vector_model.sample(min(queries, 100), rng)
    for probe in vector_model.sample(20, rng):  # warm-up, as for the keyword side
        index.dense_search(probe, 10)
    dense_times, recalls = [], []
    for probe in probes:
        begun = time.perf_counter()
        found = index.dense_search(probe, 10)
        dense_times.append(time.perf_counter() - begun)
        exact = _exact_top(index, probe, 10)
        recalls.append(len(set(found.tolist()) & set(exact.tolist())) / 10)
    return {
        "n": index.count,
        "articles": articles,
        "write_corpus_seconds": round(written, 1),
        "build": {**build, "disk_mb": _folder_mb(Path(os.path.realpath(index_path)))},
        "encoder": None
        if encoder_rate is None
        else {**encoder_rate, "archive_seconds": round(index.count / encoder_rate["per_s"])},
        "segments": [s.count for s in index.segments],
        "cold_start": cold,
        "reindex": steps,
        "keyword": keyword,
        "dense": {**percentiles(dense_times), "recall_at_10": round(float(np.mean(recalls)), 4)},
    }


def _exact_top(index, probe: np.ndarray, k: int) -> np.ndarray:
    """The k nearest live rows by brute force over every segment's vectors."""
    best_rows, best_scores = [], []
    live = np.zeros(index.size, dtype=bool)
    live[index.live_rows()] = True
    for segment, base in zip(index.segments, index.bases, strict=False):
        step = 200_000
        for start in range(0, segment.count, step):
            block = np.asarray(segment.vectors[start : start + step]) @ probe
            rows = np.arange(start, start + len(block)) + base
            block[~live[rows]] = -np.inf
            top = np.argpartition(-block, min(k, len(block) - 1))[:k]
            best_rows.append(rows[top])
            best_scores.append(block[top])
    rows, scores = np.concatenate(best_rows), np.concatenate(best_scores)
    return rows[np.argsort(-scores)[:k]]


def main(argv: list[str] | None = None) -> int:
    """The archive's full build (see the module's doc): reindex with the synthetic encoder."""
    config_file, model_file, dim = argv if argv is not None else sys.argv[1:]
    vector_model = pickle.loads(Path(model_file).read_bytes())  # written by this bench
    result = reindex(load_config(config_file), embedder=SyntheticEncoder(vector_model, int(dim)))
    print(json.dumps(dataclasses.asdict(result.stats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
