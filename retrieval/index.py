"""The index folder: FAISS vectors, the BM25 index and the chunk store, described by a manifest."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from .chunking import Chunk, chunk_article
from .config import Config, IndexConfig
from .corpus import Article
from .embedding import Embedder, model_key
from .errors import ConfigError, IndexCorruptError, IndexMismatchError, IndexMissingError
from .keyword import KeywordIndex
from .terms import TermTable

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# What reading a damaged file can raise, besides the library errors that are ValueErrors.
READ_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    TypeError,
    RuntimeError,
    EOFError,
    IndexError,
    zipfile.BadZipFile,
)


@dataclass(frozen=True)
class ArticleInfo:
    """What answers and /sources show about an article."""

    doc_id: str
    title: str
    path: str
    url: str | None = None
    source: str | None = None
    published: str | None = None
    content_hash: str = ""

    @classmethod
    def of(cls, article: Article) -> ArticleInfo:
        return cls(
            article.doc_id,
            article.title,
            article.path,
            article.url,
            article.source,
            article.published,
            article.content_hash,
        )


def expected_settings(config: Config) -> dict:
    """The manifest entries an index must have to serve this config."""
    return {
        "format_version": FORMAT_VERSION,
        "backend": config.embedding.backend,
        "model": model_key(config.embedding),
        "chunking": {"max_tokens": config.chunking.max_tokens},
        "keyword": {"stemming": config.search.stemming},
    }


def _faiss_kind(config: IndexConfig, n: int) -> str:
    if config.faiss != "auto":
        return config.faiss
    return "hnsw" if n > config.approximate_above else "flat"


def faiss_settings(config: IndexConfig, n: int) -> dict:
    """The FAISS kind and build parameters an index of n chunks gets under this config."""
    kind = _faiss_kind(config, n)
    params = {
        "hnsw": {"m": config.hnsw_m, "ef_construction": config.hnsw_ef_construction},
        "ivf": {"nlist": config.ivf_nlist},
    }.get(kind, {})
    return {"kind": kind, **params}


def make_faiss(vectors: np.ndarray, config: IndexConfig) -> faiss.Index:
    """An inner-product FAISS index over normalised vectors, of the configured kind."""
    n, dim = vectors.shape
    kind = _faiss_kind(config, n)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
    elif kind == "ivf" and n >= 64:
        nlist = _ivf_lists(config, n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    tune_faiss(index, config)
    return index


def _ivf_lists(config: IndexConfig, n: int) -> int:
    return config.ivf_nlist or max(1, min(n // 39, int(4 * np.sqrt(n))))


def check_faiss_settings(config: IndexConfig, n: int) -> None:
    """Raise ConfigError when an index of n chunks cannot be built under this config."""
    nlist = _ivf_lists(config, n)
    if _faiss_kind(config, n) == "ivf" and n >= 64 and nlist > n:
        raise ConfigError(
            f"index.ivf_nlist: {nlist} lists need at least {nlist} chunks to train on and "
            f"the corpus has {n}; lower it, or set it to 0 to size the lists from the corpus"
        )


def _fits(index: faiss.Index, config: IndexConfig, n: int) -> bool:
    """Whether an approximate index still suits a corpus of n chunks when extended."""
    if isinstance(index, faiss.IndexHNSW):
        return True
    # IVF lists are sized for the corpus they were trained on; a flat index stood in for
    # IVF when that corpus was too small to train on.
    return isinstance(index, faiss.IndexIVF) and 2 * index.nlist >= _ivf_lists(config, n)


def tune_faiss(index: faiss.Index, config: IndexConfig) -> None:
    """Apply the search-time parameters of the configured index kind."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = config.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = config.ivf_nprobe


@dataclass
class IndexData:
    """Everything searching needs; rows of `vectors` line up with `chunks`.

    A loaded index maps `vectors` and `sentence_vectors` from disk (read-only arrays).
    """

    manifest: dict
    chunks: list[Chunk]
    articles: dict[str, ArticleInfo]
    vectors: np.ndarray
    sentence_vectors: np.ndarray
    sentence_offsets: np.ndarray  # chunk i's sentences are rows [off[i], off[i+1])
    faiss_index: faiss.Index
    keyword: KeywordIndex
    passage_terms: TermTable  # one text per chunk
    sentence_terms: TermTable  # one text per row of sentence_vectors
    path: Path | None = None
    version: str = field(default="")
    # FAISS id -> chunk row, -1 for a stale row (a passage since changed or removed); None when
    # FAISS ids are the chunk rows. Approximate indexes are extended, not rebuilt, by a reindex.
    faiss_rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._search_params = None
        self._selector_bits = None
        if self.faiss_rows is None:
            return
        live = self.faiss_rows >= 0
        if live.all():
            return
        # Stale rows are filtered inside the FAISS search, so k live results still come back.
        self._selector_bits = np.packbits(live, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(self._selector_bits))
        if hasattr(self.faiss_index, "hnsw"):
            params = faiss.SearchParametersHNSW(efSearch=self.faiss_index.hnsw.efSearch)
        elif hasattr(self.faiss_index, "nprobe"):
            params = faiss.SearchParametersIVF(nprobe=self.faiss_index.nprobe)
        else:
            params = faiss.SearchParameters()
        params.sel = selector
        self._search_params = (params, selector)  # the selector must outlive the params

    @property
    def count(self) -> int:
        return len(self.chunks)

    def dense_search(self, query_vector: np.ndarray, k: int) -> np.ndarray:
        """Chunk rows of the k nearest passages, best first."""
        query = query_vector.reshape(1, -1)
        if self._search_params is None:
            _, ids = self.faiss_index.search(query, k)
        else:
            _, ids = self.faiss_index.search(query, k, params=self._search_params[0])
        ids = ids[0][ids[0] >= 0]
        return ids if self.faiss_rows is None else self.faiss_rows[ids]

    def save(self, folder: Path) -> None:
        """Write the folder; the manifest goes last, so a folder without one is incomplete."""
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "chunks.jsonl", "w", encoding="utf-8") as out:
            for chunk in self.chunks:
                out.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
        articles = {k: asdict(v) for k, v in self.articles.items()}
        (folder / "articles.json").write_text(json.dumps(articles, ensure_ascii=False), "utf-8")
        np.save(folder / "vectors.npy", self.vectors)
        np.save(folder / "sentence_vectors.npy", self.sentence_vectors)
        np.save(folder / "sentence_offsets.npy", self.sentence_offsets)
        faiss.write_index(self.faiss_index, str(folder / "faiss.index"))
        if self.faiss_rows is not None:
            np.save(folder / "faiss_rows.npy", self.faiss_rows)
        self.keyword.save(folder / "bm25")
        self.passage_terms.save(folder / "passage_terms.npz")
        self.sentence_terms.save(folder / "sentence_terms.npz")
        # Sizes and checksums of every file, so a damaged one is named when loading instead
        # of silently giving other answers; each file is on disk before the manifest is.
        self.manifest = {**self.manifest, "files": file_checksums(folder, sync=True)}
        _write_json(folder / MANIFEST, self.manifest)


def file_checksums(folder: Path, sync: bool = False) -> dict[str, dict]:
    """Size and SHA-256 of every file in the folder but the manifest, by relative path."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            name = path.relative_to(folder).as_posix()
            files[name] = {"bytes": path.stat().st_size, "sha256": _sha256(path, sync)}
    return files


def verify_files(folder: Path, manifest: dict, rebuild: str) -> None:
    """Raise IndexCorruptError naming the first file that is missing, truncated or altered."""
    for name, expected in sorted((manifest.get("files") or {}).items()):
        path = folder / name
        problem = None
        try:
            size = path.stat().st_size
            digest = _sha256(path) if size == expected.get("bytes") else None
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror or exc})"
        else:
            if size != expected.get("bytes"):
                problem = f"is {size:,} bytes, but {expected.get('bytes'):,} were written"
            elif digest != expected.get("sha256"):
                problem = "does not match its checksum (damaged on disk)"
        if problem:
            raise IndexCorruptError(
                f"the index at {folder} is damaged: {name} {problem}. Rebuild it with: {rebuild}"
            )


def _sha256(path: Path, sync: bool = False) -> str:
    """The SHA-256 of one file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        while block := data.read(1 << 20):
            digest.update(block)
        if sync:  # written by this process: on disk before the manifest names it
            os.fsync(data.fileno())
    return digest.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(data, out, ensure_ascii=False, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def read_manifest(path: Path, rebuild: str = "tanya-reindex") -> dict:
    """The manifest of the index at path; IndexMissingError when there is none."""
    manifest = path / MANIFEST
    if not path.exists():
        raise IndexMissingError(f"there is no index at {path}. Build it with: {rebuild}")
    try:
        data = json.loads(manifest.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(
            f"the index at {path} has no readable manifest ({exc.__class__.__name__}). "
            f"Rebuild it with: {rebuild} --full"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("documents"), dict):
        raise IndexCorruptError(
            f"the index at {path} has a malformed manifest. Rebuild it with: {rebuild} --full"
        )
    return data


def check_manifest(manifest: dict, config: Config, ignore: tuple[str, ...] = ()) -> None:
    """Raise IndexMismatchError naming every setting that differs from the config."""
    expected = expected_settings(config)
    diffs = [
        f"{key}: index has {manifest.get(key)!r}, config wants {want!r}"
        for key, want in expected.items()
        if manifest.get(key) != want and key not in ignore
    ]
    if diffs:
        raise IndexMismatchError(
            "the index was built with other settings than the config asks for:\n  "
            + "\n  ".join(diffs)
            + f"\nRebuild it with: {config.reindex_command(full=True)}"
        )


def load_index(path: Path, config: Config, ignore: tuple[str, ...] = ()) -> IndexData:
    """Load the index at path (following the live link once) after checking its manifest.

    `ignore` names manifest settings that may differ (a rebuild that reuses the vectors).
    """
    real = Path(os.path.realpath(path))
    manifest = read_manifest(real, config.reindex_command())
    check_manifest(manifest, config, ignore)
    # (A plain reindex also rebuilds a damaged index in full: it cannot reuse its vectors.)
    verify_files(real, manifest, config.reindex_command(full=True))
    reading = "chunks.jsonl"
    try:
        chunks = []
        with open(real / "chunks.jsonl", encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                record["sentences"] = tuple(tuple(s) for s in record["sentences"])
                chunks.append(Chunk(**record))
        reading = "articles.json"
        articles = {
            k: ArticleInfo(**v)
            for k, v in json.loads((real / "articles.json").read_text("utf-8")).items()
        }
        # Mapped, not read: FAISS holds its own copy for search, and these are only read a few
        # rows per question, so at a million passages they stay on disk instead of in memory.
        reading = "vectors.npy"
        vectors = np.load(real / "vectors.npy", mmap_mode="r")
        reading = "sentence_vectors.npy"
        sentence_vectors = np.load(real / "sentence_vectors.npy", mmap_mode="r")
        reading = "sentence_offsets.npy"
        offsets = np.load(real / "sentence_offsets.npy")
        reading = "faiss.index"
        faiss_index = faiss.read_index(str(real / "faiss.index"))
        reading = "faiss_rows.npy"
        rows_file = real / "faiss_rows.npy"
        faiss_rows = np.load(rows_file) if rows_file.exists() else None
        reading = "bm25"
        keyword = KeywordIndex.load(real / "bm25", config.search.stemming)
        reading = "passage_terms.npz"
        if (real / reading).exists():
            passage_terms = TermTable.load(real / reading)
            reading = "sentence_terms.npz"
            sentence_terms = TermTable.load(real / reading)
        else:  # a build from before the word sets were saved: made now
            passage_terms = TermTable.build([c.text for c in chunks])
            sentence_terms = TermTable.build(sentence_texts(chunks))
    except READ_ERRORS as exc:
        raise IndexCorruptError(
            f"the index at {path} cannot be read: {reading} is damaged "
            f"({exc.__class__.__name__}: {exc}). "
            f"Rebuild it with: {config.reindex_command(full=True)}"
        ) from exc
    if faiss_rows is None:
        faiss_rows_ok = faiss_index.ntotal == len(chunks)
    else:
        live = faiss_rows[faiss_rows >= 0]
        faiss_rows_ok = (
            faiss_rows.dtype.kind == "i"
            and faiss_rows.ndim == 1
            and len(faiss_rows) == faiss_index.ntotal
            and len(live) == len(chunks)
            and np.array_equal(np.sort(live), np.arange(len(chunks)))
        )
    terms_ok = passage_terms.count == len(chunks) and sentence_terms.count == len(sentence_vectors)
    if not (faiss_rows_ok and terms_ok and len(chunks) == len(vectors) == len(offsets) - 1):
        raise IndexCorruptError(
            f"the index at {path} is inconsistent (chunk and vector counts differ). "
            f"Rebuild it with: {config.reindex_command(full=True)}"
        )
    tune_faiss(faiss_index, config.index)
    return IndexData(
        manifest,
        chunks,
        articles,
        vectors,
        sentence_vectors,
        offsets,
        faiss_index,
        keyword,
        passage_terms,
        sentence_terms,
        real,
        manifest.get("build_id", ""),
        faiss_rows,
    )


@dataclass(frozen=True)
class BuildStats:
    """What a build did, for the reindex summary."""

    added: int
    changed: int
    removed: int
    unchanged: int
    chunks: int
    embedded: int
    seconds: float


class Progress(Protocol):
    """A progress display: tqdm fits."""

    def update(self, n: int) -> object: ...

    def close(self) -> object: ...


def document_hashes(
    articles: Sequence[Article], previous: IndexData | None, kept: Sequence[ArticleInfo] = ()
) -> dict[str, str]:
    """The manifest's documents: each article's content hash, and each kept article's
    hash as the previous index recorded it."""
    documents = {a.doc_id: a.content_hash for a in articles}
    if previous is not None:
        documents.update(
            {info.doc_id: previous.manifest["documents"][info.doc_id] for info in kept}
        )
    return documents


def build_index(
    articles: Sequence[Article],
    embedder: Embedder,
    config: Config,
    previous: IndexData | None = None,
    progress: Callable[[int], Progress] | None = None,
    kept: Sequence[ArticleInfo] = (),
) -> tuple[IndexData, BuildStats]:
    """Chunk and embed the articles, reusing the previous index's vectors for unchanged ones.

    `kept` are articles of the previous index carried over as they are (their files could
    not be read this time).
    """
    started = time.perf_counter()
    kept = kept if previous else ()  # kept articles are the previous index's
    old_hashes = previous.manifest["documents"] if previous else {}
    old_rows: dict[str, list[int]] = {}
    if previous:
        for row, chunk in enumerate(previous.chunks):
            old_rows.setdefault(chunk.doc_id, []).append(row)

    chunks: list[Chunk] = []
    sources: list[tuple[str, int]] = []  # per chunk: ("old", row) or ("new", position)
    fresh: list[Chunk] = []
    for article in articles:
        if previous and old_hashes.get(article.doc_id) == article.content_hash:
            for row in old_rows.get(article.doc_id, []):
                chunks.append(previous.chunks[row])
                sources.append(("old", row))
            continue
        for chunk in chunk_article(article, config.chunking.max_tokens, embedder.count_tokens):
            chunks.append(chunk)
            sources.append(("new", len(fresh)))
            fresh.append(chunk)
    for info in kept:
        for row in old_rows.get(info.doc_id, []):
            chunks.append(previous.chunks[row])
            sources.append(("old", row))
    check_faiss_settings(config.index, len(chunks))  # before the embedding, not after it

    bar = progress(len(fresh)) if progress else None
    try:
        new_vectors, new_sentences = _embed(fresh, embedder, bar)
    finally:
        if bar:
            bar.close()
    dim = embedder.dim
    vectors = np.zeros((len(chunks), dim), dtype=np.float32)
    sentence_parts, offsets = [], [0]
    new_offsets = np.cumsum([0] + [len(c.sentences) for c in fresh])
    for i, (where, k) in enumerate(sources):
        if where == "old":
            vectors[i] = previous.vectors[k]
            a, b = previous.sentence_offsets[k], previous.sentence_offsets[k + 1]
            sentence_parts.append(previous.sentence_vectors[a:b])
        else:
            vectors[i] = new_vectors[k]
            sentence_parts.append(new_sentences[new_offsets[k] : new_offsets[k + 1]])
        offsets.append(offsets[-1] + len(sentence_parts[-1]))
    sentence_vectors = (
        np.concatenate(sentence_parts) if sentence_parts else np.zeros((0, dim), np.float32)
    )

    faiss_index, faiss_rows = _extend_faiss(previous, sources, new_vectors, config.index)
    if faiss_index is None:
        faiss_index = make_faiss(vectors, config.index)
    documents = document_hashes(articles, previous, kept)
    infos = {a.doc_id: ArticleInfo.of(a) for a in articles}
    infos.update({info.doc_id: info for info in kept})
    manifest = {
        **expected_settings(config),
        "dimension": dim,
        "faiss": faiss_settings(config.index, len(chunks)),
        "faiss_stale_rows": int(faiss_index.ntotal) - len(chunks),
        "documents": documents,
        "chunks": len(chunks),
        "build_id": f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-"
        f"{time.perf_counter_ns() % 10**6}",
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    data = IndexData(
        manifest,
        chunks,
        infos,
        vectors,
        sentence_vectors,
        np.asarray(offsets, dtype=np.int64),
        faiss_index,
        KeywordIndex.build([c.text for c in chunks], config.search.stemming),
        TermTable.build([c.text for c in chunks]),
        TermTable.build(sentence_texts(chunks)),
        version=manifest["build_id"],
        faiss_rows=faiss_rows,
    )
    changed = sum(
        1 for a in articles if a.doc_id in old_hashes and old_hashes[a.doc_id] != a.content_hash
    )
    added = sum(1 for a in articles if a.doc_id not in old_hashes)
    stats = BuildStats(
        added=added,
        changed=changed,
        removed=len(set(old_hashes) - set(documents)),
        unchanged=len(articles) - added - changed + len(kept),
        chunks=len(chunks),
        embedded=len(fresh),
        seconds=time.perf_counter() - started,
    )
    return data, stats


def _extend_faiss(
    previous: IndexData | None,
    sources: Sequence[tuple[str, int]],
    new_vectors: np.ndarray,
    config: IndexConfig,
) -> tuple[faiss.Index | None, np.ndarray | None]:
    """The previous approximate index with the new vectors added, and its id -> row map.

    Rebuilding an HNSW graph of a million passages takes many minutes, so a reindex adds the
    new passages to the existing one and hides the stale rows (changed or removed articles),
    until they would pass `rebuild_stale_share`. (None, None) means: build afresh.
    """
    settings = faiss_settings(config, len(sources))
    if (
        previous is None
        or settings["kind"] not in ("hnsw", "ivf")
        or previous.manifest.get("faiss") != settings
    ):
        return None, None
    old_total = previous.faiss_index.ntotal
    total = old_total + len(new_vectors)
    if (
        total == 0
        or not _fits(previous.faiss_index, config, len(sources))
        or (total - len(sources)) / total > config.rebuild_stale_share
    ):
        return None, None
    if previous.faiss_rows is None:
        old_ids = np.arange(previous.count)
    else:
        live = np.flatnonzero(previous.faiss_rows >= 0)
        old_ids = np.empty(previous.count, dtype=np.int64)
        old_ids[previous.faiss_rows[live]] = live
    rows = np.full(total, -1, dtype=np.int64)
    for row, (where, k) in enumerate(sources):
        rows[old_ids[k] if where == "old" else old_total + k] = row
    index = previous.faiss_index
    if len(new_vectors):
        index.add(np.ascontiguousarray(new_vectors, dtype=np.float32))
    return index, rows


def sentence_texts(chunks: Sequence[Chunk]) -> list[str]:
    """Every sentence of every chunk, in the order of the sentence vectors."""
    return [c.text[a - c.start : b - c.start] for c in chunks for a, b in c.sentences]


def encoder_texts(chunks: Sequence[Chunk]) -> tuple[list[str], list[str]]:
    """What indexing encodes: every chunk's text, and each sentence of multi-sentence chunks.

    A one-sentence chunk's sentence vector is the chunk's own, so it is not encoded twice.
    """
    return [c.text for c in chunks], sentence_texts([c for c in chunks if len(c.sentences) > 1])


def _embed(
    chunks: list[Chunk], embedder: Embedder, progress: Progress | None
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors for the chunks and for every sentence of theirs (for highlighting)."""
    dim = embedder.dim
    if not chunks:
        return np.zeros((0, dim), np.float32), np.zeros((0, dim), np.float32)
    step = 64
    vectors, sentence_vectors = [], []
    for i in range(0, len(chunks), step):
        batch = chunks[i : i + step]
        passages, sentences = encoder_texts(batch)
        # One encoder call per step: passages and sentences share its batches and threads.
        encoded = np.asarray(embedder.encode_passages(passages + sentences), dtype=np.float32)
        vectors.append(encoded[: len(batch)])
        sentence_vectors.append(encoded[_sentence_rows(batch)])
        if progress:
            progress.update(len(batch))
    return np.concatenate(vectors), np.concatenate(sentence_vectors)


def _sentence_rows(batch: list[Chunk]) -> np.ndarray:
    """Per sentence of the batch, its row in [chunk vectors..., multi-chunk sentence vectors...]."""
    rows, k = [], len(batch)
    for c_index, chunk in enumerate(batch):
        n = len(chunk.sentences)
        if n == 1:
            rows.append(c_index)
        else:
            rows.extend(range(k, k + n))
            k += n
    return np.asarray(rows, dtype=np.int64)
