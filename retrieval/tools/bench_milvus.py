"""The bench's Milvus section: a synthetic archive into a Milvus Lite collection, through the
real reindex path (the archive section's article files and synthetic encoder), then
question-time search against it and the processes' memory.

Reported: the reindex end to end in passages per second and the part spent in Milvus's
inserts (rows per second), a no-change reindex and one article added, `bot.py --ask` from
start to its first line, dense and keyword search and the whole search of a question
(`answering.search`: both candidate lists, the scores at the fused rows, re-ranking) p50 /
p95, and the resident memory of this process and of Milvus Lite's.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from ..answering.query import make_query
from ..answering.search import search
from ..config import Config
from ..index import milvus
from ..index.keyword import tokenize
from ..index.reindex import reindex
from ..index.store import open_store
from .bench_archive import SyntheticEncoder, article_text, write_archive
from .measuring import measure_cold_start, percentiles, pseudo_words, write_config

QUESTION = "Kapan rapat itu digelar dan siapa yang memimpinnya?"


class _TimedClient:
    """A Milvus client that adds the seconds and rows of its inserts to `watch`."""

    def __init__(self, inner, watch: dict):
        self._inner, self._watch = inner, watch

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def insert(self, collection: str, rows, **kwargs):
        started = time.perf_counter()
        try:
            return self._inner.insert(collection, rows, **kwargs)
        finally:
            self._watch["seconds"] += time.perf_counter() - started
            self._watch["rows"] += len(rows)


def rss_mb(pid: int | str = "self") -> dict:
    """A process's resident memory now and at its peak, in MB (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"now_mb": fields.get("VmRSS"), "peak_mb": fields.get("VmHWM")}


def lite_process() -> int | None:
    """The pid of this process's Milvus Lite child, if one runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and command.endswith(b"milvus"):
            return int(entry.name)
    return None


def _timed(work, inputs) -> dict:
    times = []
    for value in inputs:
        started = time.perf_counter()
        work(value)
        times.append(time.perf_counter() - started)
    return percentiles(times)


def measure_milvus(
    n: int,
    config: Config,
    vector_model,
    dim: int,
    workdir: Path,
    queries: int = 200,
    cold_runs: int = 1,
    seed: int = 0,
) -> dict:
    """Index an n-passage synthetic archive into Milvus Lite and time it and its search."""
    rng = np.random.default_rng(seed)
    corpus = workdir / "milvus" / "corpus"
    words = pseudo_words(min(50_000, max(1000, n // 2)), rng)
    articles = write_archive(corpus, n, rng, words)
    index = dataclasses.replace(
        config.index,
        backend="milvus",
        path=str((workdir / "milvus" / ".index").resolve()),
        milvus=dataclasses.replace(
            config.index.milvus,
            uri=str((workdir / "milvus" / "bench.db").resolve()),
            index_type="FLAT",
        ),
    )
    lite = dataclasses.replace(
        config,
        corpus=dataclasses.replace(config.corpus, path=str(corpus.resolve())),
        index=index,
        search=dataclasses.replace(config.search, cache_size=0),
    )
    encoder = SyntheticEncoder(vector_model, dim)
    inserts = {"seconds": 0.0, "rows": 0}
    client = milvus.connect(lite)
    milvus.use_client(lite, _TimedClient(client, inserts))
    started = time.perf_counter()
    built = reindex(lite, embedder=encoder)
    build_seconds = time.perf_counter() - started
    milvus.use_client(lite, client)
    started = time.perf_counter()
    reindex(lite, embedder=encoder)
    no_change = time.perf_counter() - started
    (corpus / "baru").mkdir()
    (corpus / "baru" / "tambahan.txt").write_text(article_text(words, rng, articles), "utf-8")
    started = time.perf_counter()
    reindex(lite, embedder=encoder)
    add_one = time.perf_counter() - started
    lite_pid = lite_process()
    lite_after_build = rss_mb(lite_pid) if lite_pid else {}

    milvus.disconnect(lite)  # Milvus Lite serves one process per file: the cold start's turn
    cold = measure_cold_start(
        write_config(lite, workdir / "milvus.yaml"), runs=cold_runs, question=QUESTION
    )
    started = time.perf_counter()
    store = open_store(lite)
    open_seconds = time.perf_counter() - started
    probes = vector_model.sample(queries, rng)
    files = sorted(corpus.rglob("*.txt"))
    texts = []  # four words of an article, as the archive section asks
    for pick in rng.choice(len(files), queries):
        body = files[pick].read_text("utf-8").split("\n\n", 1)[1]
        texts.append(" ".join(rng.choice(tokenize(body), 4, replace=False)))
    tokens = [tokenize(t, lite.search.stemming) for t in texts]
    for probe, query in zip(probes[:20], tokens[:20], strict=True):  # warm-up
        store.dense_search(probe, 10)
        store.keyword.top(query, lite.search.candidates)
    dense = _timed(lambda p: store.dense_search(p, lite.search.candidates), probes)
    keyword = _timed(lambda q: store.keyword.top(q, lite.search.candidates), tokens)
    prepared = [make_query(t, p, lite.search.stemming) for t, p in zip(texts, probes, strict=True)]
    whole = _timed(lambda q: search(store, q, lite.search), prepared)
    lite_pid = lite_process()
    report = {
        "n": store.count,
        "articles": articles + 1,
        "build": {
            "seconds": round(build_seconds, 1),
            "passages_per_s": round(built.stats.chunks / build_seconds, 1),
            "summary": dataclasses.asdict(built.stats),
            "insert_rows": inserts["rows"],
            "insert_seconds": round(inserts["seconds"], 1),
            "insert_rows_per_s": round(inserts["rows"] / max(inserts["seconds"], 1e-9), 1),
        },
        "no_change_seconds": round(no_change, 2),
        "add_one_seconds": round(add_one, 2),
        "cold_start": cold,
        "open_seconds": round(open_seconds, 2),
        "dense": dense,
        "keyword": keyword,
        "search": whole,
        "rss": {
            "bench": rss_mb(),
            "milvus_lite_after_build": lite_after_build,
            "milvus_lite_serving": rss_mb(lite_pid) if lite_pid else {},
        },
    }
    milvus.disconnect(lite)
    return report
