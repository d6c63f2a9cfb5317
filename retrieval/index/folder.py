"""The index folder: segments of passages (see segments.py) and what was deleted from them,
described by a manifest."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..config import Config, IndexConfig
from ..corpus.articles import Article
from ..corpus.chunking import Chunk, chunk_article
from ..errors import ConfigError, IndexCorruptError, IndexMismatchError, IndexMissingError
from ..models.embedding import Embedder, model_key
from .arrays import Damaged
from .keyword import tokenize
from .postings import Deleted, KeywordIndex
from .segments import FAISS, Chunks, Rows, Segment, Shape, Terms, link_folder
from .writing import VECTORS, SegmentWriter, batches

if TYPE_CHECKING:  # imported where used: it takes a quarter of a second, which a reindex
    import faiss  # with nothing to do, which never opens a FAISS index, does not spend

FORMAT_VERSION = 2
# More segments than this after a reindex: the smallest are merged into one.
MAX_SEGMENTS = 8
CORPUS_FILES = "corpus_files.json"
MANIFEST = "manifest.json"
# Passages embedded and written per step of a build, and vectors added to FAISS per step.
EMBED_STEP, FAISS_STEP = 1024, 65536
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


class EncoderFailed(Exception):
    """The encoder failed while a build was being written (its error is the cause): not a
    failure to write, though the build's folder is there to remove."""


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
    import faiss

    n, dim = vectors.shape
    kind = _faiss_kind(config, n)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
    elif kind == "ivf" and n >= max(64, _ivf_lists(config, n)):
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


def tune_faiss(index: faiss.Index, config: IndexConfig) -> None:
    """Apply the search-time parameters of the configured index kind."""
    import faiss

    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = config.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = config.ivf_nprobe


class IndexData:
    """Everything searching needs, over the segments of one build laid end to end as rows.

    A row of a deleted passage (from an article since changed or removed) stays in its segment
    until the segment is merged, but no search returns it; `count` is the live passages.
    """

    def __init__(
        self,
        manifest: dict,
        segments: Sequence[Segment],
        deleted: Sequence[Deleted],
        config: Config,
        path: Path | None = None,
        search: bool = True,
    ):
        self.manifest = manifest
        self.segments = list(segments)
        self.deleted = list(deleted)
        self.path = path
        self.version = manifest.get("build_id", "")
        self.bases = np.cumsum([0, *(s.count for s in segments)])
        self.size = int(self.bases[-1])
        self.keyword = KeywordIndex([s.postings for s in segments], deleted, config.search.stemming)
        self._live_rows = np.flatnonzero(self.keyword.live_mask)
        self.chunks = Chunks([s.chunks for s in segments], self._live_rows)
        self.vectors = Rows([s.vectors for s in segments])
        self.sentence_vectors = Rows([s.sentence_vectors for s in segments])
        sentence_bases = np.cumsum([0, *(len(s.sentence_vectors) for s in segments)])
        self.sentence_offsets = np.concatenate(
            [s.sentence_offsets[:-1] + b for s, b in zip(segments, sentence_bases, strict=False)]
            + [sentence_bases[-1:]]
        ).astype(np.int64)
        self.passage_terms = Terms([s.passage_terms for s in segments])
        self.sentence_terms = Terms([s.sentence_terms for s in segments])
        self._articles: dict[str, ArticleInfo] | None = None
        self._index_config = config.index
        self._search_params: list | None = None
        if search:
            self._prepare_search()

    def _prepare_search(self) -> list:
        """Open and tune each segment's FAISS index, with parameters that filter its deleted
        rows inside the search, so k live results still come back."""
        if self._search_params is None:
            for segment in self.segments:
                tune_faiss(segment.faiss_index, self._index_config)
            self._search_params = [
                _search_params(s.faiss_index, d)
                for s, d in zip(self.segments, self.deleted, strict=True)
            ]
        return self._search_params

    @property
    def count(self) -> int:
        return len(self._live_rows)

    def live_rows(self) -> np.ndarray:
        """The rows of the live passages, ascending."""
        return self._live_rows

    @property
    def articles(self) -> dict[str, ArticleInfo]:
        """The live articles by id (read from the segments when first asked for)."""
        if self._articles is None:
            articles = {}
            for segment, gone in zip(self.segments, self.deleted, strict=True):
                for doc_id, fields in segment.articles().items():
                    first = fields.pop("first")
                    fields.pop("count")
                    if not _contains(gone.docs, first):
                        articles[doc_id] = ArticleInfo(**fields)
            self._articles = articles
        return self._articles

    def check(self) -> None:
        """Read every passage, article, posting and word set once (what `bot.py --check`
        does, as one question reads only some); IndexCorruptError naming a damaged file."""
        self.articles  # noqa: B018 - parsed and checked
        for segment, gone, entry in zip(
            self.segments, self.deleted, self.manifest["segments"], strict=True
        ):
            live = sum(
                1 for f in segment.articles().values() if not _contains(gone.docs, f["first"])
            )
            if entry.get("articles", live) != live:
                raise IndexCorruptError(
                    f"the index at {self.path} is inconsistent: segment {segment.id} holds "
                    f"{live:,} articles, its manifest entry says {entry['articles']:,}. "
                    f"Rebuild it with: {segment.opening.rebuild}"
                )
            for row in range(segment.count):
                segment.chunks[row]
            segment.postings.check()
            segment.passage_terms.check()
            segment.sentence_terms.check()

    def dense_search(self, query_vector: np.ndarray, k: int) -> np.ndarray:
        """Rows of the k nearest live passages, best first."""
        query = np.ascontiguousarray(query_vector.reshape(1, -1), dtype=np.float32)
        scores, rows = [], []
        for segment, base, params in zip(
            self.segments, self.bases, self._prepare_search(), strict=False
        ):
            if segment.count == 0:
                continue
            found = min(k, segment.count)
            if params is None:
                distances, ids = segment.faiss_index.search(query, found)
            else:
                distances, ids = segment.faiss_index.search(query, found, params=params[0])
            keep = ids[0] >= 0
            scores.append(distances[0][keep])
            rows.append(ids[0][keep] + base)
        if not rows:
            return np.zeros(0, dtype=np.int64)
        if len(rows) == 1:
            return rows[0]
        scores, rows = np.concatenate(scores), np.concatenate(rows)
        return rows[np.argsort(-scores, kind="stable")[:k]]


def _contains(sorted_values: np.ndarray, value: int) -> bool:
    at = int(np.searchsorted(sorted_values, value))
    return at < len(sorted_values) and int(sorted_values[at]) == value


def _search_params(index: faiss.Index, gone: Deleted):
    """Search parameters that skip a segment's deleted rows, with the selector they point to
    (it must outlive them); None when nothing is deleted."""
    import faiss

    if not len(gone.docs):
        return None
    live = np.ones(index.ntotal, dtype=bool)
    live[gone.docs] = False
    bits = np.packbits(live, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(bits))
    if isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=index.hnsw.efSearch)
    elif isinstance(index, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(nprobe=index.nprobe)
    else:
        params = faiss.SearchParameters()
    params.sel = selector
    return params, selector, bits


def file_checksums(folder: Path, names: Sequence[str] | None = None) -> dict[str, dict]:
    """Size, modification time and SHA-256 of files in the folder (every file but the
    manifest when no names are given), by relative path; each is synced to disk."""
    if names is None:
        names = [
            p.relative_to(folder).as_posix() for p in _files_under(folder) if p.name != MANIFEST
        ]
    files = {}
    for name in names:
        path = folder / name
        digest = _sha256(path, sync=True)
        stat = path.stat()
        files[name] = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    return files


def verify_files(folder: Path, manifest: dict, rebuild: str, thorough: bool = False) -> None:
    """Raise IndexCorruptError naming the first file that is missing, truncated or altered.

    Segment files are large and never rewritten: unless `thorough`, one whose size and
    modification time are as written is taken as it was, and only the others are hashed.
    """
    for name, expected in sorted((manifest.get("files") or {}).items()):
        path = folder / name
        problem = None
        try:
            stat = path.stat()
            size = stat.st_size
            sealed = (
                not thorough
                and name.startswith("segments/")
                and stat.st_mtime_ns == expected.get("mtime_ns")
            )
            digest = (
                (expected.get("sha256") if sealed else _sha256(path))
                if size == expected.get("bytes")
                else None
            )
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
    """Write JSON atomically and synced. One line: json.dumps without indent is the C encoder,
    about ten times faster than json.dump on an archive's hundred thousand documents."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(json.dumps(data, ensure_ascii=False))
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
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("documents"), dict)
        or not isinstance(data.get("segments", []), list)
    ):
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


def load_index(
    path: Path,
    config: Config,
    ignore: tuple[str, ...] = (),
    thorough: bool = False,
    search: bool = True,
    manifest: dict | None = None,
) -> IndexData:
    """Load the index at path (following the live link once) after checking its manifest.

    `ignore` names manifest settings that may differ (a rebuild that reuses the vectors);
    `thorough` hashes every file, the large segment files included; without `search` the
    FAISS indexes are opened only when first searched (a reindex never searches);
    `manifest`: the build's manifest, when the caller has just read it (a reindex has).
    """
    real = Path(os.path.realpath(path))
    if manifest is None:
        manifest = read_manifest(real, config.reindex_command())
    check_manifest(manifest, config, ignore)
    # (A plain reindex also rebuilds a damaged index in full: it cannot reuse its vectors.)
    full = config.reindex_command(full=True)
    verify_files(real, manifest, full, thorough)
    reading = MANIFEST
    try:
        segments, deleted = [], []
        for entry in manifest["segments"]:
            folder = real / "segments" / entry["id"]
            shape = Shape.of(entry, manifest.get("dimension"))
            segments.append(Segment.open(folder, search, shape, full))
            reading = f"deleted/{entry['id']}.npz"
            gone = Deleted.none()
            if entry.get("deleted"):
                with np.load(real / reading, allow_pickle=False) as arrays:
                    gone = Deleted.from_arrays(arrays)
            deleted.append(gone)
            reading = MANIFEST
        data = IndexData(manifest, segments, deleted, config, real, search)
    except READ_ERRORS as exc:
        reading = (getattr(exc, "__notes__", None) or [reading])[-1]
        if isinstance(exc, PermissionError):
            raise IndexCorruptError(
                f"the index at {path} cannot be read: {reading} cannot be read "
                f"({exc.strerror or exc}). Rebuild it with: {full}"
            ) from exc
        detail = str(exc) if isinstance(exc, Damaged) else f"{exc.__class__.__name__}: {exc}"
        raise IndexCorruptError(
            f"the index at {path} cannot be read: {reading} is damaged ({detail}). "
            f"Rebuild it with: {full}"
        ) from exc
    consistent = all(s.consistent() for s in segments) and all(
        len(d.docs) == entry.get("deleted", 0)
        and (not len(d.docs) or 0 <= d.docs[0] <= d.docs[-1] < s.count)
        for s, d, entry in zip(segments, deleted, manifest["segments"], strict=True)
    )
    if not consistent or data.count != manifest.get("chunks"):
        raise IndexCorruptError(
            f"the index at {path} is inconsistent (chunk and vector counts differ). "
            f"Rebuild it with: {full}"
        )
    if search:
        data.articles  # noqa: B018 - read now, so a damaged articles.json is named at load
    return data


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
    hashes: dict[str, str], previous: IndexData | None, kept: Sequence[ArticleInfo] = ()
) -> dict[str, str]:
    """The manifest's documents: each article's content hash, and each kept article's
    hash as the previous index recorded it."""
    documents = dict(hashes)
    if previous is not None:
        documents.update(
            {info.doc_id: previous.manifest["documents"][info.doc_id] for info in kept}
        )
    return documents


def new_build_id() -> str:
    """A name for a build folder, unique on this machine."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.perf_counter_ns() % 10**9}"


def build_index(
    folder: Path,
    articles: Sequence[Article],
    embedder: Embedder,
    config: Config,
    previous: IndexData | None = None,
    progress: Callable[[int], Progress] | None = None,
    documents: dict[str, str] | None = None,
    corpus_files: dict | None = None,
) -> tuple[IndexData, BuildStats]:
    """Write a build to folder: the previous build's segments, less the passages of changed and
    removed articles, and one new segment with the passages of new and changed articles.

    `documents` are every article the build is to hold, with its content hash (by default the
    given articles): an article in it that is not given is kept as the previous build has it.
    Small segments are merged, and a segment with too many deleted passages is rewritten, from
    their stored chunks and vectors; nothing is embedded but the new articles.
    """
    started = time.perf_counter()
    documents = {a.doc_id: a.content_hash for a in articles} if documents is None else documents
    old_hashes = previous.manifest["documents"] if previous else {}
    fresh_articles = [
        a for a in articles if a.doc_id in documents and old_hashes.get(a.doc_id) != a.content_hash
    ]
    # Counted now and chunked again as they are embedded: a million passages held at once
    # would take about a gigabyte.
    fresh = sum(len(article_chunks(a, config, embedder)) for a in fresh_articles)
    gone_docs = {d for d, h in old_hashes.items() if documents.get(d) != h}
    keep, deleted, rewrite, removed = _plan(previous, gone_docs, config, fresh > 0)
    carried = sum(previous.segments[i].count - len(deleted[i].docs) for i in keep + rewrite)
    check_faiss_settings(config.index, carried + fresh)  # before the embedding

    build_id = folder.name
    folder.mkdir(parents=True)
    entries, files = [], {}
    for i in keep:
        segment, gone = previous.segments[i], deleted[i]
        link_folder(segment.folder, folder / "segments" / segment.id)
        entry = dict(
            previous.manifest["segments"][i],
            deleted=len(gone.docs),
            articles=_live_articles(previous, i, gone, removed[i]),
        )
        entries.append(entry)
        prefix = f"segments/{segment.id}/"
        files.update({k: v for k, v in previous.manifest["files"].items() if k.startswith(prefix)})
        if len(gone.docs):
            (folder / "deleted").mkdir(exist_ok=True)
            with open(folder / "deleted" / f"{segment.id}.npz", "wb") as out:
                np.savez(out, **gone.to_arrays())
    writing = bool(rewrite) or fresh > 0
    if writing:
        written = folder / "segments" / f"{build_id}-{len(entries)}"
        entry = write_segment(
            written,
            [(previous.segments[i], deleted[i]) for i in rewrite],
            fresh_articles,
            fresh,
            embedder,
            config,
            progress,
        )
        entries.append(entry)
        files.update(
            file_checksums(
                folder, [p.relative_to(folder).as_posix() for p in _files_under(written)]
            )
        )
    if corpus_files is not None:
        _write_json(folder / CORPUS_FILES, corpus_files)
    own = [
        p.relative_to(folder).as_posix()
        for p in _files_under(folder)
        if p.name != CORPUS_FILES  # a record to save reading, checked when it is read
        and not p.relative_to(folder).as_posix().startswith("segments/")
    ]
    files.update(file_checksums(folder, own))
    live = sum(e["count"] - e["deleted"] for e in entries)
    manifest = {
        **expected_settings(config),
        "dimension": embedder.dim,
        "documents": documents,
        "chunks": live,
        "segments": entries,
        "build_id": build_id,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": files,
    }
    _write_json(folder / MANIFEST, manifest)
    # Opened without FAISS: a reindex does not search the build it made (a caller may).
    segments = [
        Segment.open(folder / "segments" / e["id"], False, Shape.of(e, embedder.dim))
        for e in entries
    ]
    gone_list = [deleted[i] for i in keep] + ([Deleted.none()] if writing else [])
    data = IndexData(manifest, segments, gone_list, config, folder, search=False)
    added = sum(1 for d in documents if d not in old_hashes)
    changed = sum(1 for d, h in documents.items() if d in old_hashes and old_hashes[d] != h)
    stats = BuildStats(
        added=added,
        changed=changed,
        removed=sum(1 for d in old_hashes if d not in documents),
        unchanged=len(documents) - added - changed,
        chunks=live,
        embedded=fresh,
        seconds=time.perf_counter() - started,
    )
    return data, stats


def _files_under(folder: Path) -> list[Path]:
    """Every file under folder, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _plan(
    previous: IndexData | None, gone_docs: set[str], config: Config, adding: bool
) -> tuple[list[int], list[Deleted], list[int], list[int]]:
    """Which previous segments are kept as they are, what each has deleted after this build,
    which are rewritten into the new segment, and how many articles each loses now."""
    if previous is None:
        return [], [], [], []
    deleted = list(previous.deleted)
    removed = [0] * len(previous.segments)
    if gone_docs:
        for i, segment in enumerate(previous.segments):
            rows = []
            for doc_id, fields in segment.articles().items():
                first = fields["first"]
                if doc_id in gone_docs and not _contains(deleted[i].docs, first):
                    rows.extend(range(first, first + fields["count"]))
                    removed[i] += 1
            if rows:
                tokens = [tokenize(segment.chunks[r].text, config.search.stemming) for r in rows]
                deleted[i] = deleted[i].plus(segment.postings, np.asarray(rows), tokens)
    settings_changed = previous.manifest.get("keyword") != expected_settings(config)["keyword"]
    keep, rewrite = [], []
    for i, (segment, entry) in enumerate(
        zip(previous.segments, previous.manifest["segments"], strict=True)
    ):
        gone = len(deleted[i].docs)
        if gone == segment.count:
            continue  # nothing of it is left
        if (
            settings_changed
            or entry.get("faiss") != faiss_settings(config.index, segment.count)
            or gone / segment.count > config.index.rebuild_stale_share
        ):
            rewrite.append(i)
        else:
            keep.append(i)
    # Too many segments: the smallest are merged with the new passages.
    while len(keep) + (1 if adding or rewrite else 0) > MAX_SEGMENTS:
        smallest = min(keep, key=lambda i: previous.segments[i].count)
        keep.remove(smallest)
        rewrite.append(smallest)
    return keep, deleted, sorted(rewrite), removed


def _live_articles(previous: IndexData, i: int, gone: Deleted, removed: int) -> int:
    """The articles a kept segment still holds after this build: its manifest entry's count
    less those removed now (counted from its articles for a build written without counts)."""
    entry = previous.manifest["segments"][i]
    if isinstance(entry.get("articles"), int):
        return entry["articles"] - removed
    return sum(
        1
        for fields in previous.segments[i].articles().values()
        if not _contains(gone.docs, fields["first"])
    )


def article_chunks(article: Article, config: Config, embedder: Embedder) -> list[Chunk]:
    """An article's passages as indexing cuts them."""
    return chunk_article(article, config.chunking.max_tokens, embedder.count_tokens)


def write_segment(
    folder: Path,
    carried: Sequence[tuple[Segment, Deleted]],
    articles: Sequence[Article],
    fresh: int,
    embedder: Embedder,
    config: Config,
    progress: Callable[[int], Progress] | None = None,
) -> dict:
    """Write a new segment folder as its passages come: the live passages of `carried`
    segments (their stored chunks and vectors), then the `fresh` passages of `articles`,
    embedded EMBED_STEP at a time; its manifest entry."""
    writer = SegmentWriter(folder, embedder.dim, config.search.stemming)
    try:
        for segment, gone in carried:
            writer.carry(segment, gone)
        by_id = {a.doc_id: a for a in articles}
        bar = progress(fresh) if progress else None
        try:
            chunks = (c for a in articles for c in article_chunks(a, config, embedder))
            for batch in batches(chunks, EMBED_STEP):
                try:
                    vectors, sentence_vectors = _embed(
                        batch, embedder, bar, config.index.sentence_vectors
                    )
                except Exception as exc:
                    raise EncoderFailed from exc
                writer.add(
                    batch, vectors, sentence_vectors, lambda d: asdict(ArticleInfo.of(by_id[d]))
                )
        finally:
            if bar:
                bar.close()
        entry = writer.finish()
    finally:
        writer.close()
    return {**entry, "faiss": write_faiss(folder, config.index)}


def write_faiss(folder: Path, config: IndexConfig) -> dict:
    """Build a segment's FAISS index from its written vectors, read a block at a time, and
    write it; its settings for the manifest."""
    import faiss

    path = folder / VECTORS
    with open(path, "rb") as file:
        np.lib.format.read_magic(file)
        (n, dim), _, _ = np.lib.format.read_array_header_1_0(file)
        kind = _faiss_kind(config, n)
        if kind == "ivf":  # trained on every vector, as make_faiss does
            index = make_faiss(np.fromfile(file, np.float32, n * dim).reshape(n, dim), config)
        else:
            index = _empty_faiss(kind, n, dim, config)
            for start in range(0, n, FAISS_STEP):
                rows = min(FAISS_STEP, n - start)
                index.add(np.fromfile(file, np.float32, rows * dim).reshape(rows, dim))
            tune_faiss(index, config)
    faiss.write_index(index, str(folder / FAISS))
    return faiss_settings(config, n)


def _empty_faiss(kind: str, n: int, dim: int, config: IndexConfig) -> faiss.Index:
    """An empty flat or HNSW index with room for n vectors, so adding them in blocks never
    copies its storage to a larger one (a vector grows by doubling: twice the memory)."""
    import faiss

    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
        storage = faiss.downcast_index(index.storage)
    else:
        index = storage = faiss.IndexFlatIP(dim)
    storage.codes.resize(n * storage.code_size)  # the capacity stays when it is emptied
    storage.codes.resize(0)
    return index


def sentence_texts(chunks: Sequence[Chunk]) -> list[str]:
    """Every sentence of every chunk, in the order of the sentence vectors."""
    return [c.text[a - c.start : b - c.start] for c in chunks for a, b in c.sentences]


def encoder_texts(chunks: Sequence[Chunk], sentences: bool = True) -> tuple[list[str], list[str]]:
    """What indexing encodes: every chunk's text, and each sentence of multi-sentence chunks
    (none without `sentences`: index.sentence_vectors false).

    A one-sentence chunk's sentence vector is the chunk's own, so it is not encoded twice.
    """
    if not sentences:
        return [c.text for c in chunks], []
    return [c.text for c in chunks], sentence_texts([c for c in chunks if len(c.sentences) > 1])


def _embed(
    chunks: list[Chunk], embedder: Embedder, progress: Progress | None, sentences: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors for the chunks and for every sentence of theirs (for highlighting). Without
    `sentences`, each sentence gets its chunk's vector as a stand-in: nothing more is encoded,
    and answering embeds the sentences of the passages it quotes when it needs them."""
    dim = embedder.dim
    if not chunks:
        return np.zeros((0, dim), np.float32), np.zeros((0, dim), np.float32)
    step = 64
    vectors, sentence_vectors = [], []
    for i in range(0, len(chunks), step):
        batch = chunks[i : i + step]
        passages, texts = encoder_texts(batch, sentences)
        # One encoder call per step: passages and sentences share its batches and threads.
        encoded = np.asarray(embedder.encode_passages(passages + texts), dtype=np.float32)
        vectors.append(encoded[: len(batch)])
        rows = _sentence_rows(batch) if sentences else _stand_in_rows(batch)
        sentence_vectors.append(encoded[rows])
        if progress:
            progress.update(len(batch))
    return np.concatenate(vectors), np.concatenate(sentence_vectors)


def _stand_in_rows(batch: list[Chunk]) -> np.ndarray:
    """Per sentence of the batch, the row of its chunk's vector."""
    return np.repeat(np.arange(len(batch)), [len(c.sentences) for c in batch])


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
