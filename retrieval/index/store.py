"""The storage seam: what answering needs from an index, whatever holds it.

Searching and answering (search.py, answer.py) use an index only through `PassageStore`.
The embedded default (`index.backend: local`) is `folder.IndexData`: segments of FAISS, BM25
postings and word sets on this machine's disk, loaded by `folder.load_index`. With
`index.backend: milvus` it is `milvus.MilvusStore`: dense and keyword candidates from Milvus,
and the few rows each question re-ranks and quotes fetched with them (see docs/scaling.md).
`open_store` is where the configured store is made, `live_version` what the bot compares with
the loaded store's `version` to pick up a reindex.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from ..corpus.chunking import Chunk

if TYPE_CHECKING:
    from ..config import Config
    from .folder import ArticleInfo


class RowArray(Protocol):
    """Vectors by row: `array[rows]` gathers them (rows: an int or an array of ints)."""

    def __getitem__(self, rows): ...

    def __len__(self) -> int: ...


class ChunkRows(Protocol):
    """Passages by row; iterating gives the live ones."""

    def __getitem__(self, row: int) -> Chunk: ...

    def __iter__(self) -> Iterator[Chunk]: ...

    def __len__(self) -> int: ...


class KeywordSearch(Protocol):
    """BM25 over the live passages, in the store's rows."""

    stemming: bool

    def top(
        self, tokens: Sequence[str], k: int, hidden: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def scores_at(self, tokens: Sequence[str], rows: np.ndarray) -> np.ndarray: ...

    def known(self, tokens: Sequence[str]) -> int: ...


class WordSets(Protocol):
    """Per row (passage or sentence): what it offers that a question lacks."""

    def features(
        self, rows: np.ndarray, question_tokens: frozenset[str]
    ) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class PassageStore(Protocol):
    """An index as searching and answering see it: passages in rows, their vectors, a
    dense and a keyword search over the live ones, and the articles they come from."""

    manifest: dict
    version: str
    path: Path | None
    chunks: ChunkRows
    vectors: RowArray
    sentence_vectors: RowArray
    sentence_offsets: np.ndarray  # row i's sentences are sentence rows [off[i], off[i + 1])
    keyword: KeywordSearch
    passage_terms: WordSets
    sentence_terms: WordSets

    @property
    def count(self) -> int: ...

    @property
    def articles(self) -> Mapping[str, ArticleInfo]: ...

    def live_rows(self) -> np.ndarray: ...

    def dense_search(self, query_vector: np.ndarray, k: int) -> np.ndarray: ...

    def check(self) -> None:
        """Read everything once; IndexCorruptError naming what is damaged."""
        ...


def open_store(config: Config) -> PassageStore:
    """The configured index for answering."""
    if config.index.backend == "milvus":
        from .milvus import MilvusStore

        return MilvusStore.open(config)
    from .folder import load_index

    return load_index(config.index_path, config)


def live_version(config: Config) -> str:
    """The version of the configured index as it is now (newer than a loaded one after a
    reindex): the live build's id, or the Milvus collection's."""
    if config.index.backend == "milvus":
        from .milvus import live_version as collection_version

        return collection_version(config)
    from .folder import read_manifest

    return read_manifest(Path(config.index_path.resolve())).get("build_id", "")
