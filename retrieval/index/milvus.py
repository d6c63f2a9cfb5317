"""A PassageStore in Milvus: the passages, their vectors and BM25 in Milvus collections.

Three collections, named after `index.milvus.collection` (say `tanya`):

- `tanya`: a row per passage: its article (`doc_id`, and `article`, a number that stays
  with the article while it changes), the reindex batch that wrote it (`version`), its text,
  its keyword tokens (ours, from keyword.py, joined by spaces and read by a whitespace +
  lowercase analyzer into Milvus's BM25 sparse vector, with the local index's k1 and b), its
  place in the article and sentence spans (`chunk`) and its vector;
- `tanya_sentences`: the vectors of the sentences of passages that have more than one (a
  one-sentence passage's sentence vector is its own), id = passage id × 2¹⁶ + position;
- `tanya_documents`: the manifest (row 0: settings, counts and the visible version) and a
  row per article: its content hash, version, and what answers and /sources show of it.

A reindex writes in batches of whole articles. Each batch's rows get the next version and stay
invisible (every read filters `version <= committed`) until the manifest commits that version;
the commit also names the articles whose older rows the batch replaces, which reads leave out
until the reindex has deleted them. So a reader sees every article whole, its old passages or
its new ones, and a reindex killed at any moment leaves rows that the next one removes first.

Rows are the store's own small integers, given to passages as searches return them, so the
ranking code is the same as for the local index; the few passages a question re-ranks and
quotes come back with the search that found them.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config, is_server_uri
from ..corpus.articles import Article
from ..corpus.chunking import Chunk, chunk_article
from ..errors import IndexCorruptError, IndexMismatchError, IndexMissingError, TanyaError
from ..models.embedding import Embedder
from .folder import (
    ArticleInfo,
    BuildStats,
    Progress,
    _embed,
    check_manifest,
    expected_settings,
    new_build_id,
)
from .keyword import tokenize
from .postings import K1, B
from .terms import TermTable

STORE_FORMAT = 1
MANIFEST_ID = 0
SENTENCE_BITS = 16  # a passage has fewer sentences than 2**16 (chunks hold at most 8,192 tokens)
MAX_LIMIT = 16_384  # Milvus's largest top-k and query window
MAX_FIELD_BYTES = 65_535  # Milvus's longest VARCHAR
MAX_REQUEST_BYTES = 16 << 20  # one insert request stays well under gRPC's 64 MB
FILTER_VALUES = 1000  # values in one `in [...]` filter
ROWS_CACHED = 20_000  # passages kept in memory (text, vector) after a search returned them
ANALYZER = {"tokenizer": "whitespace", "filter": ["lowercase"]}
PASSAGE_FIELDS = ["id", "doc_id", "text", "chunk", "vector"]
WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Names:
    """The collections of one store."""

    passages: str
    sentences: str
    documents: str

    @classmethod
    def of(cls, config: Config) -> Names:
        base = config.index.milvus.collection
        return cls(base, f"{base}_sentences", f"{base}_documents")

    def __iter__(self) -> Iterator[str]:
        return iter((self.passages, self.sentences, self.documents))


# --- connections ----------------------------------------------------------------------------

_clients: dict[tuple[str, str], object] = {}
_loaded: set[tuple[tuple[str, str], str]] = set()
_clients_lock = threading.Lock()


def _key(config: Config) -> tuple[str, str]:
    return config.milvus_uri, config.milvus_token


def _where(config: Config) -> str:
    uri = config.milvus_uri
    server = is_server_uri(uri)
    return f"the Milvus server at {uri}" if server else f"the Milvus Lite file {uri}"


def connect(config: Config):
    """The process's client for the configured Milvus (one per URI and token), started on
    first use: for a local file, Milvus Lite runs as a child process of this one."""
    with _clients_lock:
        client = _clients.get(_key(config))
        if client is None:
            client = _clients[_key(config)] = _new_client(config)
        return client


def use_client(config: Config, client) -> None:
    """Make `client` the process's client for the configured Milvus (the bench wraps the
    client to time its calls)."""
    with _clients_lock:
        _clients[_key(config)] = client


def disconnect(config: Config) -> None:
    """Close the client for the configured Milvus, and stop its Milvus Lite process, if any."""
    with _clients_lock:
        client = _clients.pop(_key(config), None)
        for loaded in [k for k in _loaded if k[0] == _key(config)]:
            _loaded.discard(loaded)
    if client is None:
        return
    client.close()
    if not is_server_uri(config.milvus_uri):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(config.milvus_uri)


@contextmanager
def _quiet_imports():
    # milvus-lite 2.5.1 imports pkg_resources, which warns on every start.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        yield


def _new_client(config: Config):
    try:
        with _quiet_imports():
            from pymilvus import MilvusClient, MilvusException
    except ImportError as exc:
        raise TanyaError(
            "index.backend is milvus, but pymilvus is not installed: pip install 'tanya[milvus]' "
            "(for a local file also milvus-lite==2.5.1, or 'tanya[milvus-lite]')"
        ) from exc
    uri = config.milvus_uri
    if not is_server_uri(uri):
        try:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TanyaError(f"cannot create the folder of {uri}: {exc.strerror or exc}") from exc
    try:
        with _quiet_imports():
            return MilvusClient(
                uri=uri, token=config.milvus_token, timeout=config.index.milvus.timeout_seconds
            )
    except MilvusException as exc:
        if is_server_uri(uri):
            raise TanyaError(f"cannot reach {_where(config)}: {exc.message}") from exc
        if "milvus-lite is required" in exc.message:
            raise TanyaError(
                f"index.milvus.uri is a local file ({uri}), which needs Milvus Lite: "
                "pip install milvus-lite==2.5.1 'setuptools<82' (or 'tanya[milvus-lite]'); "
                "or give a Milvus server as http://host:port"
            ) from exc
        raise TanyaError(
            f"cannot open {_where(config)}: another process has it open (Milvus Lite serves one "
            "process per file). Stop that process, or use a Milvus server "
            "(index.milvus.uri: http://host:port)"
        ) from exc


@contextmanager
def _calls(config: Config, what: str):
    """Milvus's errors as one message naming what was being done, and where."""
    from pymilvus import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise TanyaError(f"{what} in {_where(config)} failed: {exc.message}") from exc


def _load(client, config: Config, names: Names) -> None:
    """Load the collections into memory (after a restart they come back unloaded); one that
    is loaded already is left as it is, with the replicas its operator gave it."""
    from pymilvus.client.types import LoadState

    timeout = config.index.milvus.timeout_seconds
    for name in names:
        if (_key(config), name) in _loaded:
            continue
        if client.get_load_state(name, timeout=timeout)["state"] != LoadState.Loaded:
            client.load_collection(name, timeout=timeout)
        _loaded.add((_key(config), name))


# --- expressions ----------------------------------------------------------------------------


def ints(values: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


def visible(manifest: dict, articles: bool = False) -> str:
    """The filter every read applies: committed rows, less those a commit replaced and the
    reindex has not deleted yet (Milvus Lite has no `not`: the complement is spelt out).
    Filters name articles by number: Milvus's string literals take \\" and \\\\ but no other
    escape, so they cannot spell every article id (one with a newline, say)."""
    expression = f"version <= {int(manifest['committed'])}"
    if articles:
        expression += f" and id != {MANIFEST_ID}"
    pending = manifest.get("pending")
    if pending:
        expression += (
            f" and (article not in {ints(pending['articles'])}"
            f" or version >= {int(pending['version'])})"
        )
    return expression


def _parts(values: Sequence, size: int = FILTER_VALUES) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --- schema and manifest --------------------------------------------------------------------


def dense_index(config: Config) -> dict:
    """The dense vector index the config asks for (inner product over normalised vectors)."""
    kind = config.index.milvus.index_type
    params = (
        {"M": config.index.hnsw_m, "efConstruction": config.index.hnsw_ef_construction}
        if kind == "HNSW"
        else {}
    )
    return {"index_type": kind, "metric_type": "IP", "params": params}


def _create(client, config: Config, names: Names, dim: int) -> None:
    from pymilvus import DataType, Function, FunctionType

    def schema():
        made = client.create_schema(auto_id=False)
        made.add_field("id", DataType.INT64, is_primary=True)
        made.add_field("article", DataType.INT64)
        made.add_field("version", DataType.INT64)
        return made

    def create(name, made, indexes):
        params = client.prepare_index_params()
        for field, index in indexes.items():
            params.add_index(field, **index)
        client.create_collection(
            name,
            schema=made,
            index_params=params,
            consistency_level="Strong",  # a commit is seen by the next read
            num_shards=1,  # BM25 statistics are per shard: one keeps them the whole collection's
            timeout=config.index.milvus.timeout_seconds,
        )
        _loaded.add((_key(config), name))

    _drop(client, config, names)  # what a reindex killed while creating them left
    passages = schema()
    passages.add_field("doc_id", DataType.VARCHAR, max_length=MAX_FIELD_BYTES)
    passages.add_field("text", DataType.VARCHAR, max_length=MAX_FIELD_BYTES)
    passages.add_field(
        "tokens",
        DataType.VARCHAR,
        max_length=MAX_FIELD_BYTES,
        enable_analyzer=True,
        analyzer_params=ANALYZER,
    )
    passages.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    passages.add_field("chunk", DataType.JSON)
    passages.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    passages.add_function(
        Function(
            name="bm25",
            function_type=FunctionType.BM25,
            input_field_names=["tokens"],
            output_field_names=["sparse"],
        )
    )
    bm25 = {"bm25_k1": K1, "bm25_b": B}
    sparse = {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "BM25", "params": bm25}
    create(names.passages, passages, {"sparse": sparse, "vector": dense_index(config)})
    flat = {"index_type": "FLAT", "metric_type": "IP", "params": {}}
    sentences = schema()
    sentences.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    create(names.sentences, sentences, {"vector": flat})
    documents = schema()
    documents.add_field("doc_id", DataType.VARCHAR, max_length=MAX_FIELD_BYTES)
    documents.add_field("content_hash", DataType.VARCHAR, max_length=256)
    documents.add_field("info", DataType.JSON)
    documents.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field
    create(names.documents, documents, {"vector": {**flat, "metric_type": "L2"}})


def _drop(client, config: Config, names: Names) -> None:
    for name in names:
        if client.has_collection(name, timeout=config.index.milvus.timeout_seconds):
            client.drop_collection(name, timeout=config.index.milvus.timeout_seconds)
        _loaded.discard((_key(config), name))


def read_manifest(client, config: Config, names: Names) -> dict | None:
    """The store's manifest, or None when the collections do not exist."""
    timeout = config.index.milvus.timeout_seconds
    if not client.has_collection(names.documents, timeout=timeout):
        return None
    _load(client, config, names)
    rows = client.query(
        names.documents, filter=f"id == {MANIFEST_ID}", output_fields=["info"], timeout=timeout
    )
    return dict(rows[0]["info"]) if rows else None


def _write_manifest(client, config: Config, names: Names, manifest: dict) -> None:
    row = {
        "id": MANIFEST_ID,
        "article": 0,
        "doc_id": "",
        "version": 0,
        "content_hash": "",
        "info": manifest,
        "vector": [0.0, 0.0],
    }
    client.upsert(names.documents, [row], timeout=config.index.milvus.timeout_seconds)


def _new_manifest(config: Config, dim: int) -> dict:
    return {
        **expected_settings(config),
        "store": "milvus",
        "store_format": STORE_FORMAT,
        "dimension": dim,
        "keyword_scoring": {"k1": K1, "b": B},
        "dense_index": dense_index(config),
        "committed": 0,
        "next_id": 1,
        "chunks": 0,
        "pending": None,
        "build_id": new_build_id(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def check_store(manifest: dict, config: Config, dim: int | None = None) -> None:
    """Raise IndexMismatchError when the collection was built for other settings (model,
    dimension, chunking, keywords), with the command that rebuilds it."""
    check_manifest(manifest, config)
    fixed = {"store_format": STORE_FORMAT, "keyword_scoring": {"k1": K1, "b": B}}
    if dim is not None:
        fixed["dimension"] = dim
    diffs = [
        f"{key}: collection has {manifest.get(key)!r}, this tanya wants {want!r}"
        for key, want in fixed.items()
        if manifest.get(key) != want
    ]
    if diffs:
        raise IndexMismatchError(
            f"the Milvus collection {config.index.milvus.collection} was built with other "
            "settings:\n  " + "\n  ".join(diffs) + "\nRebuild it with: "
            f"{config.reindex_command(full=True)}"
        )


def _open(config: Config) -> tuple[object, Names, dict]:
    """Client, names and manifest of an existing store; IndexMissingError when there is none."""
    client, names = connect(config), Names.of(config)
    with _calls(config, f"reading the collection {names.passages}"):
        manifest = read_manifest(client, config, names)
    if manifest is None:
        raise IndexMissingError(
            f"there is no collection {names.passages} in {_where(config)}. "
            f"Build it with: {config.reindex_command()}"
        )
    return client, names, manifest


def scan(
    client, config: Config, collection: str, expression: str, fields: list[str], top: int
) -> Iterator[dict]:
    """Every row of a collection that the expression admits, by id, in windows of ids below
    `top` (the ids are the manifest's counter, so a window never holds more than a query's
    limit)."""
    for start in range(0, top, MAX_LIMIT):
        window = f"{expression} and id >= {start} and id < {start + MAX_LIMIT}"
        rows = client.query(
            collection,
            filter=window,
            output_fields=fields,
            limit=MAX_LIMIT,
            timeout=config.index.milvus.timeout_seconds,
        )
        yield from sorted(rows, key=lambda r: r["id"])


def _article_rows(client, config: Config, names: Names, manifest: dict) -> Iterator[dict]:
    """The row of every visible article."""
    fields = ["article", "doc_id", "content_hash", "info"]
    expression = visible(manifest, articles=True)
    return scan(client, config, names.documents, expression, fields, int(manifest["next_id"]))


def live_version(config: Config) -> str:
    """The version the collection serves now (may be newer than a loaded store's)."""
    client, names = connect(config), Names.of(config)
    with _calls(config, "reading the manifest"):
        manifest = read_manifest(client, config, names)
    return (manifest or {}).get("build_id", "")


# --- the store ------------------------------------------------------------------------------


def _chunk(entity: dict) -> Chunk:
    place = entity["chunk"]
    return Chunk(
        entity["doc_id"],
        place["paragraph"],
        place["start"],
        place["end"],
        entity["text"],
        tuple(tuple(s) for s in place["sentences"]),
        place["kind"],
    )


class MilvusStore:
    """The passages of a Milvus collection as searching and answering see them."""

    def __init__(self, client, config: Config, names: Names, manifest: dict):
        self.path: Path | None = None
        self.version = manifest.get("build_id", "")
        self.manifest = manifest
        self._client, self._config, self._names = client, config, names
        self._timeout = config.index.milvus.timeout_seconds
        self._filter = visible(manifest)
        self._lock = threading.Lock()
        self._ids: list[int] = []  # row -> passage id
        self._rows: dict[int, int] = {}  # passage id -> row
        self._offsets = np.zeros(1024, dtype=np.int64)  # sentence offsets, grown as rows come
        self._cache: OrderedDict[int, tuple[Chunk, np.ndarray | None]] = OrderedDict()
        self._sentences: OrderedDict[int, np.ndarray] = OrderedDict()
        self._all: np.ndarray | None = None
        self._articles: dict[str, ArticleInfo] = {}
        self.chunks = _Chunks(self)
        self.vectors = _Vectors(self)
        self.sentence_vectors = _SentenceVectors(self)
        self.keyword = _Keyword(self, config.search.stemming)
        self.passage_terms = _PassageTerms(self)
        self.sentence_terms = _SentenceTerms(self)

    @classmethod
    def open(cls, config: Config) -> MilvusStore:
        """The configured collection, after checking that it serves this config."""
        client, names, manifest = _open(config)
        check_store(manifest, config)
        store = cls(client, config, names, manifest)
        with _calls(config, "reading the articles"):
            store._read_articles()
        return store

    def _read_articles(self) -> None:
        """Every visible article's row: what answers and /sources show, and its hash."""
        articles, documents = {}, {}
        for row in _article_rows(self._client, self._config, self._names, self.manifest):
            info = {k: v for k, v in row["info"].items() if k != "passages"}
            articles[row["doc_id"]] = ArticleInfo(
                row["doc_id"], content_hash=row["content_hash"], **info
            )
            documents[row["doc_id"]] = row["content_hash"]
        self._articles = articles
        self.manifest = {**self.manifest, "documents": documents}

    @property
    def count(self) -> int:
        return int(self.manifest["chunks"])

    @property
    def articles(self) -> Mapping[str, ArticleInfo]:
        return self._articles

    @property
    def sentence_offsets(self) -> np.ndarray:
        """Row i's sentences are sentence rows [off[i], off[i + 1]) (for the rows given out)."""
        with self._lock:
            return self._offsets[: len(self._ids) + 1]

    def live_rows(self) -> np.ndarray:
        """The rows of every visible passage (each given a row now if it had none)."""
        if self._all is None:
            rows = []
            fields = ["id", "doc_id", "text", "chunk"]
            top = int(self.manifest["next_id"])
            with _calls(self._config, "reading the passages"):
                found = list(
                    scan(
                        self._client, self._config, self._names.passages, self._filter, fields, top
                    )
                )
            for part in _parts(found):
                rows.append(self._admit(part))
            self._all = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return self._all

    def check(self) -> None:
        """Read every visible passage once (what `bot.py --check` does); IndexCorruptError
        when the collection holds another number of them than its manifest says."""
        found = len(self.live_rows())
        if found != self.count:
            raise IndexCorruptError(
                f"the Milvus collection {self._names.passages} holds {found:,} visible "
                f"passages but its manifest says {self.count:,}. "
                f"Rebuild it with: {self._config.reindex_command(full=True)}"
            )

    def dense_search(self, query_vector: np.ndarray, k: int) -> np.ndarray:
        """Rows of the k nearest visible passages, best first."""
        if k <= 0 or not self.count:
            return np.zeros(0, dtype=np.int64)
        params = {"metric_type": "IP"}
        if self.manifest.get("dense_index", {}).get("index_type") == "HNSW":
            params["params"] = {"ef": max(self._config.index.hnsw_ef_search, k)}
        hits = self._search(
            [np.asarray(query_vector, dtype=np.float32).tolist()],
            "vector",
            min(k, MAX_LIMIT),
            self._filter,
            params,
            PASSAGE_FIELDS,
        )[0]
        return self._admit([{**h["entity"], "id": h["id"]} for h in hits])

    def _search(self, data, field, limit, expression, params, fields) -> list:
        with _calls(self._config, "searching"):
            return self._client.search(
                self._names.passages,
                data=data,
                anns_field=field,
                limit=limit,
                filter=expression,
                search_params=params,
                output_fields=fields,
                timeout=self._timeout,
            )

    def _admit(self, entities: Sequence[dict]) -> np.ndarray:
        """The rows of these passages (new ones get the next rows), their data kept."""
        rows = np.empty(len(entities), dtype=np.int64)
        with self._lock:
            for i, entity in enumerate(entities):
                pid = int(entity["id"])
                chunk = _chunk(entity)
                row = self._rows.get(pid)
                if row is None:
                    row = len(self._ids)
                    if row + 2 > len(self._offsets):
                        self._offsets = np.concatenate(
                            [self._offsets, np.zeros_like(self._offsets)]
                        )
                    self._offsets[row + 1] = self._offsets[row] + len(chunk.sentences)
                    self._ids.append(pid)
                    self._rows[pid] = row
                vector = entity.get("vector")
                if vector is None and row in self._cache:
                    vector = self._cache[row][1]
                self._keep(self._cache, row, (chunk, None if vector is None else _f32(vector)))
                rows[i] = row
        return rows

    @staticmethod
    def _keep(cache: OrderedDict, key, value) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > ROWS_CACHED:
            cache.popitem(last=False)

    def ids(self, rows: np.ndarray) -> list[int]:
        """The passage ids of these rows."""
        return [self._ids[int(r)] for r in np.asarray(rows).reshape(-1)]

    def passages(self, rows: Sequence[int]) -> list[tuple[Chunk, np.ndarray]]:
        """Each row's chunk and vector, fetched for rows no longer (or never fully) kept."""
        rows = [int(r) for r in rows]
        with self._lock:
            held = {
                r: self._cache[r] for r in set(rows) if self._cache.get(r, (0, None))[1] is not None
            }
        missing = sorted(set(rows) - held.keys())
        if missing:
            found = []
            with _calls(self._config, "fetching passages"):
                for part in _parts(self.ids(np.asarray(missing))):
                    found += self._client.query(
                        self._names.passages,
                        filter=f"id in {ints(part)}",
                        output_fields=PASSAGE_FIELDS,
                        timeout=self._timeout,
                    )
            if len(found) < len(missing):
                raise IndexMissingError(
                    "a passage was removed from the Milvus collection by a reindex while this "
                    "question was answered; ask again"
                )
            self._admit(found)
            held.update({self._rows[int(e["id"])]: (_chunk(e), _f32(e["vector"])) for e in found})
        return [held[r] for r in rows]

    def sentence_rows(self, rows: Sequence[int]) -> dict[int, np.ndarray]:
        """Each row's sentence vectors (a one-sentence passage's is its own vector)."""
        rows = sorted({int(r) for r in rows})
        offsets = self.sentence_offsets
        out: dict[int, np.ndarray] = {}
        fetch = []
        with self._lock:
            for row in rows:
                n = int(offsets[row + 1] - offsets[row])
                if n > 1 and row in self._sentences:
                    out[row] = self._sentences[row]
                elif n > 1:
                    fetch.append(row)
        for row, (_, vector) in zip(rows, self.passages(rows), strict=True):
            n = int(offsets[row + 1] - offsets[row])
            if n <= 1:
                out[row] = vector.reshape(n, -1) if n else vector[:0].reshape(0, -1)
        if fetch:
            keys = [
                (pid << SENTENCE_BITS) + j
                for pid, row in zip(self.ids(np.asarray(fetch)), fetch, strict=True)
                for j in range(int(offsets[row + 1] - offsets[row]))
            ]
            found: dict[int, np.ndarray] = {}
            with _calls(self._config, "fetching sentence vectors"):
                for part in _parts(keys):
                    for hit in self._client.query(
                        self._names.sentences,
                        filter=f"id in {ints(part)}",
                        output_fields=["id", "vector"],
                        timeout=self._timeout,
                    ):
                        found[int(hit["id"])] = _f32(hit["vector"])
            if len(found) < len(keys):
                raise IndexMissingError(
                    "a passage's sentences were removed from the Milvus collection by a reindex "
                    "while this question was answered; ask again"
                )
            with self._lock:
                for pid, row in zip(self.ids(np.asarray(fetch)), fetch, strict=True):
                    n = int(offsets[row + 1] - offsets[row])
                    stacked = np.stack([found[(pid << SENTENCE_BITS) + j] for j in range(n)])
                    out[row] = stacked
                    self._keep(self._sentences, row, stacked)
        return out


def analysed(tokens: Sequence[str]) -> str:
    """Our tokens as the text Milvus's whitespace analyzer splits back into them: a stem can
    hold a space (Sastrawi stems "3/6" to "3 6"), which becomes a middle dot, a character no
    token holds otherwise (tokens are word characters and -/.,: only)."""
    return " ".join(WHITESPACE.sub("\u00b7", t) for t in tokens)


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _positions(key, length: int) -> np.ndarray:
    """An int, a slice or an array of rows as an array of rows."""
    if isinstance(key, slice):
        return np.arange(*key.indices(length))
    return np.asarray(key, dtype=np.int64)


class _Chunks:
    """Passages by row; iterating gives every visible passage, in live_rows order."""

    def __init__(self, store: MilvusStore):
        self._store = store

    def __getitem__(self, row: int) -> Chunk:
        return self._store.passages([row])[0][0]

    def __iter__(self) -> Iterator[Chunk]:
        rows = self._store.live_rows()
        for part in _parts(rows.tolist()):
            for row in part:
                with self._store._lock:
                    held = self._store._cache.get(row)
                yield held[0] if held else self[row]

    def __len__(self) -> int:
        return self._store.count


class _Vectors:
    """Passage vectors by row (an int gives one vector, rows or a slice a matrix)."""

    def __init__(self, store: MilvusStore):
        self._store = store

    def __len__(self) -> int:
        return len(self._store._ids)

    def __getitem__(self, key):
        rows = _positions(key, len(self))
        vectors = [v for _, v in self._store.passages(rows.reshape(-1).tolist())]
        if rows.ndim == 0:
            return vectors[0]
        dim = int(self._store.manifest["dimension"])
        return np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)


class _SentenceVectors:
    """Sentence vectors by sentence row (see MilvusStore.sentence_offsets)."""

    def __init__(self, store: MilvusStore):
        self._store = store

    def __len__(self) -> int:
        return int(self._store.sentence_offsets[-1])

    def __getitem__(self, key):
        positions = _positions(key, len(self))
        flat = positions.reshape(-1)
        offsets = self._store.sentence_offsets
        rows = np.searchsorted(offsets, flat, side="right") - 1
        by_row = self._store.sentence_rows(rows.tolist())
        dim = int(self._store.manifest["dimension"])
        out = np.empty((len(flat), dim), dtype=np.float32)
        for i, (row, position) in enumerate(zip(rows.tolist(), flat.tolist(), strict=True)):
            out[i] = by_row[row][position - offsets[row]]
        return out[0] if positions.ndim == 0 else out


class _Keyword:
    """Milvus's BM25 over the visible passages, on our tokens, scored as postings.py scores
    (Milvus multiplies each term's score by k1 + 1, which is divided out)."""

    def __init__(self, store: MilvusStore, stemming: bool):
        self.stemming = stemming
        self._store = store
        self._known: dict[str, bool] = {}

    def top(
        self, tokens: Sequence[str], k: int, hidden: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best-scoring visible passages (score above 0), best first; `hidden` rows out."""
        if not tokens or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        expression = self._store._filter
        if hidden is not None and len(hidden):
            expression += f" and id not in {ints(self._store.ids(np.asarray(hidden)))}"
        hits = self._store._search(
            [analysed(tokens)],
            "sparse",
            min(k, MAX_LIMIT),
            expression,
            {"metric_type": "BM25"},
            PASSAGE_FIELDS,
        )[0]
        rows = self._store._admit([{**h["entity"], "id": h["id"]} for h in hits])
        scores = np.asarray([h["distance"] for h in hits], dtype=np.float32) / np.float32(K1 + 1)
        return rows, scores

    def scores_at(self, tokens: Sequence[str], rows: np.ndarray) -> np.ndarray:
        """The BM25 scores of these rows (0 where no token occurs)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not tokens or not len(rows):
            return np.zeros(len(rows), dtype=np.float32)
        ids = self._store.ids(rows)
        unique = sorted(set(ids))
        scores: dict[int, float] = {}
        for part in _parts(unique):
            expression = f"{self._store._filter} and id in {ints(part)}"
            hits = self._store._search(
                [analysed(tokens)], "sparse", len(part), expression, {"metric_type": "BM25"}, []
            )[0]
            scores.update({int(h["id"]): h["distance"] for h in hits})
        values = np.asarray([scores.get(i, 0.0) for i in ids], dtype=np.float32)
        return values / np.float32(K1 + 1)

    def known(self, tokens: Sequence[str]) -> int:
        """How many of these tokens occur in the visible passages."""
        asked = [t for t in dict.fromkeys(tokens) if t not in self._known]
        for part in _parts(asked):
            hits = self._store._search(
                [analysed([t]) for t in part],
                "sparse",
                1,
                self._store._filter,
                {"metric_type": "BM25"},
                [],
            )
            self._known.update({t: bool(h) for t, h in zip(part, hits, strict=True)})
        return sum(1 for t in tokens if self._known[t])


class _PassageTerms:
    """Passages' word sets, from the texts of the few rows asked for (as terms.py makes them)."""

    def __init__(self, store: MilvusStore):
        self._store = store

    def texts(self, rows: np.ndarray) -> list[str]:
        return [chunk.text for chunk, _ in self._store.passages(np.asarray(rows).tolist())]

    def features(
        self, rows: np.ndarray, question_tokens: frozenset[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        texts = self.texts(rows)
        return TermTable.build(texts).features(np.arange(len(texts)), question_tokens)


class _SentenceTerms(_PassageTerms):
    """Sentences' word sets, by sentence row."""

    def texts(self, rows: np.ndarray) -> list[str]:
        positions = np.asarray(rows, dtype=np.int64)
        offsets = self._store.sentence_offsets
        owners = np.searchsorted(offsets, positions, side="right") - 1
        chunks = self._store.passages(owners.tolist())
        texts = []
        for (chunk, _), owner, position in zip(chunks, owners, positions, strict=True):
            a, b = chunk.sentences[int(position - offsets[owner])]
            texts.append(chunk.text[a - chunk.start : b - chunk.start])
        return texts


# --- writing: tanya-reindex against Milvus ---------------------------------------------------


@dataclass(frozen=True)
class _Article:
    """A visible article as the collection records it."""

    content_hash: str
    passages: int
    number: int  # the `article` of its rows


def open_previous(config: Config) -> MilvusStore | None:
    """The store a reindex updates, or None when the collection does not exist yet."""
    try:
        return MilvusStore.open(config)
    except IndexMissingError:
        return None


def sync(
    config: Config,
    articles: Sequence[Article],
    documents: dict[str, str],
    embedder: Callable[[], Embedder],
    full: bool = False,
    progress: Callable[[int], Progress] | None = None,
) -> BuildStats:
    """Bring the collection to `documents` (each article it should hold, with its content hash;
    those not among `articles` are kept as the collection has them): new and changed articles
    are chunked, embedded and written in batches, removed ones deleted.

    A collection built for another model, dimension or chunking is refused with the command
    that rebuilds it; `full` drops it and writes everything anew.
    """
    started = time.perf_counter()
    client, names = connect(config), Names.of(config)
    with _calls(config, f"updating the collection {names.passages}"):
        if full:
            _drop(client, config, names)
        manifest = read_manifest(client, config, names)
        if manifest is not None:
            check_store(manifest, config)
            manifest = _recover(client, config, names, manifest)
            _ensure_dense_index(client, config, names, manifest)
            old = _visible_articles(client, config, names, manifest)
        else:
            old = {}
        fresh = [
            a
            for a in articles
            if a.doc_id in documents
            and (a.doc_id not in old or old[a.doc_id].content_hash != a.content_hash)
        ]
        removed = [d for d in old if d not in documents]
        if manifest is not None and not fresh and not removed:
            seconds = time.perf_counter() - started
            return BuildStats(0, 0, 0, len(documents), int(manifest["chunks"]), 0, seconds)
        model = embedder()
        if manifest is None:
            _create(client, config, names, model.dim)
            manifest = _new_manifest(config, model.dim)
            _write_manifest(client, config, names, manifest)
        elif manifest.get("dimension") != model.dim:
            check_store(manifest, config, model.dim)
        chunks = {
            a.doc_id: chunk_article(a, config.chunking.max_tokens, model.count_tokens)
            for a in fresh
        }
        embedded = sum(len(c) for c in chunks.values())
        bar = progress(embedded) if progress else None
        try:
            for batch in _batches(fresh, chunks, config.index.milvus.batch_size):
                vectors, sentences = _embed(
                    [c for a in batch for c in chunks[a.doc_id]],
                    model,
                    bar,
                    config.index.sentence_vectors,
                )
                manifest = _write_batch(
                    client, config, names, manifest, batch, chunks, vectors, sentences, old
                )
        finally:
            if bar:
                bar.close()
        for part in _parts(removed, config.index.milvus.batch_size):
            manifest = _commit(client, config, names, manifest, _Rows(), list(part), old)
    added = sum(1 for d in documents if d not in old)
    changed = sum(1 for d, h in documents.items() if d in old and old[d].content_hash != h)
    return BuildStats(
        added=added,
        changed=changed,
        removed=sum(1 for d in old if d not in documents),
        unchanged=len(documents) - added - changed,
        chunks=int(manifest["chunks"]),
        embedded=embedded,
        seconds=time.perf_counter() - started,
    )


def _recover(client, config: Config, names: Names, manifest: dict) -> dict:
    """Finish what a killed reindex left: the deletes of its last commit, and the rows it wrote
    after that (never committed, so never seen, but counted in BM25's statistics)."""
    pending = manifest.get("pending")
    if pending:
        _delete_replaced(client, config, names, pending["articles"], int(pending["version"]))
    for name in names:
        client.delete(
            name,
            filter=f"version > {int(manifest['committed'])}",
            timeout=config.index.milvus.timeout_seconds,
        )
    if pending:
        manifest = {**manifest, "pending": None}
        _write_manifest(client, config, names, manifest)
    return manifest


def _ensure_dense_index(client, config: Config, names: Names, manifest: dict) -> None:
    """Rebuild the dense index when the config asks for another kind (nothing is re-embedded)."""
    wanted = dense_index(config)
    if manifest.get("dense_index") == wanted:
        return
    timeout = config.index.milvus.timeout_seconds
    client.release_collection(names.passages, timeout=timeout)
    client.drop_index(names.passages, "vector", timeout=timeout)
    params = client.prepare_index_params()
    params.add_index("vector", **wanted)
    client.create_index(names.passages, params, timeout=timeout)
    client.load_collection(names.passages, timeout=timeout)
    # A new build id: loaded stores reload and search the new index with its parameters.
    manifest.update(dense_index=wanted, build_id=new_build_id())
    _write_manifest(client, config, names, manifest)


def _visible_articles(client, config: Config, names: Names, manifest: dict) -> dict[str, _Article]:
    return {
        row["doc_id"]: _Article(row["content_hash"], int(row["info"]["passages"]), row["article"])
        for row in _article_rows(client, config, names, manifest)
    }


def _batches(
    fresh: Sequence[Article], chunks: dict[str, list[Chunk]], size: int
) -> Iterator[list[Article]]:
    """Whole articles, about `size` passages a batch."""
    batch, held = [], 0
    for article in fresh:
        batch.append(article)
        held += len(chunks[article.doc_id])
        if held >= size:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def _write_batch(
    client,
    config: Config,
    names: Names,
    manifest: dict,
    batch: Sequence[Article],
    chunks: dict[str, list[Chunk]],
    vectors: np.ndarray,
    sentence_vectors: np.ndarray,
    old: dict[str, _Article],
) -> dict:
    """Write a batch of whole articles with the next version, then commit it."""
    version, next_id = int(manifest["committed"]) + 1, int(manifest["next_id"])
    rows = _Rows()
    at, s = 0, 0  # the batch's passages and sentences so far
    for article in batch:
        if article.doc_id in old:
            number = old[article.doc_id].number
        else:
            number, next_id = next_id, next_id + 1
        for chunk in chunks[article.doc_id]:
            rows.passages.append(_passage_row(config, chunk, next_id, number, version, vectors[at]))
            n = len(chunk.sentences)
            if n > 1:  # a one-sentence passage's sentence vector is its own
                rows.sentences.extend(
                    {
                        "id": (next_id << SENTENCE_BITS) + j,
                        "article": number,
                        "version": version,
                        "vector": sentence_vectors[s + j],
                    }
                    for j in range(n)
                )
            at, s, next_id = at + 1, s + n, next_id + 1
        info = dataclasses.asdict(ArticleInfo.of(article))
        del info["doc_id"], info["content_hash"]
        info["passages"] = len(chunks[article.doc_id])
        row = {"id": next_id, "article": number, "doc_id": article.doc_id, "version": version}
        rows.articles.append(
            {**row, "content_hash": article.content_hash, "info": info, "vector": [0.0, 0.0]}
        )
        next_id += 1
    replaced = [a.doc_id for a in batch if a.doc_id in old]
    return _commit(client, config, names, {**manifest, "next_id": next_id}, rows, replaced, old)


def _passage_row(
    config: Config, chunk: Chunk, pid: int, number: int, version: int, vector: np.ndarray
) -> dict:
    tokens = analysed(tokenize(chunk.text, config.search.stemming))
    _check_size(chunk, tokens)
    place = {
        "paragraph": chunk.paragraph,
        "start": chunk.start,
        "end": chunk.end,
        "sentences": [list(span) for span in chunk.sentences],
        "kind": chunk.kind,
    }
    return {
        "id": pid,
        "article": number,
        "version": version,
        "doc_id": chunk.doc_id,
        "text": chunk.text,
        "tokens": tokens,
        "chunk": place,
        "vector": vector,
    }


def _check_size(chunk: Chunk, tokens: str) -> None:
    longest = max(len(chunk.text.encode()), len(tokens.encode()), len(chunk.doc_id.encode()))
    if longest > MAX_FIELD_BYTES:
        raise TanyaError(
            f"a passage of {chunk.doc_id} (paragraph {chunk.paragraph}) takes {longest:,} bytes, "
            f"and a Milvus text field holds at most {MAX_FIELD_BYTES:,}: lower "
            "chunking.max_tokens (or shorten the article's id)"
        )


@dataclass(frozen=True)
class _Rows:
    """The rows one batch writes."""

    passages: list[dict] = dataclasses.field(default_factory=list)
    sentences: list[dict] = dataclasses.field(default_factory=list)
    articles: list[dict] = dataclasses.field(default_factory=list)


def _commit(
    client,
    config: Config,
    names: Names,
    manifest: dict,
    rows: _Rows,
    replaced: list[str],
    old: dict[str, _Article],
) -> dict:
    """Insert a batch's rows (of the next version), commit that version, then delete the
    older rows of the articles it replaces."""
    version = int(manifest["committed"]) + 1
    _insert(client, config, names.passages, rows.passages)
    _insert(client, config, names.sentences, rows.sentences)
    _insert(client, config, names.documents, rows.articles)
    count = int(manifest["chunks"]) - sum(old[d].passages for d in replaced) + len(rows.passages)
    numbers = [old[d].number for d in replaced]
    manifest = {
        **manifest,
        "committed": version,
        "chunks": count,
        "pending": {"version": version, "articles": numbers} if numbers else None,
        "build_id": new_build_id(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_manifest(client, config, names, manifest)  # the commit: readers see this version
    if numbers:
        _delete_replaced(client, config, names, numbers, version)
        manifest = {**manifest, "pending": None}
        _write_manifest(client, config, names, manifest)
    return manifest


def _insert(client, config: Config, collection: str, rows: list[dict]) -> None:
    """Insert rows in requests of at most MAX_REQUEST_BYTES."""
    start, size = 0, 0
    for i, row in enumerate(rows):
        size += 64 + sum(
            len(v) * 4 if isinstance(v, np.ndarray) else len(str(v)) for v in row.values()
        )
        if size > MAX_REQUEST_BYTES and i > start:
            client.insert(collection, rows[start:i], timeout=config.index.milvus.timeout_seconds)
            start, size = i, 0
    if start < len(rows):
        client.insert(collection, rows[start:], timeout=config.index.milvus.timeout_seconds)


def _delete_replaced(client, config: Config, names: Names, numbers: list[int], version: int):
    """Delete the rows of these articles (by number) older than `version`."""
    for part in _parts(numbers):
        for name in names:
            client.delete(
                name,
                filter=f"article in {ints(part)} and version < {version}",
                timeout=config.index.milvus.timeout_seconds,
            )
