"""Segments: immutable folders of passages, each searchable on its own.

A build of the index is a list of segments plus, per segment, the passages deleted from it
since it was written (see `postings.Deleted`). A segment holds its passages (a JSON-lines
file read on demand through an offsets table), their vectors and sentence vectors, a FAISS
index, BM25 postings and word sets. It is never changed once written, so a new build links
the files of the segments it keeps (hard links) and writes only what is new.

The views at the end lay the segments end to end as one row space, the way searching and
answering see the index.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..corpus.chunking import Chunk
from .arrays import (
    READ_IN,
    Damaged,
    Opening,
    check_ends,
    check_offsets,
    check_runs,
    damaged,
    offsets_shape,
)
from .postings import Postings
from .terms import TermTable

if TYPE_CHECKING:  # imported where used (see folder.py)
    import faiss

CHUNKS, CHUNK_OFFSETS, ARTICLES = "chunks.jsonl", "chunk_offsets.npy", "articles.json"
FAISS = "faiss.index"
# FAISS's own header: the index kind, dimension, vector count, two unused fields, whether it
# is trained, the metric. The kinds index.make_faiss writes: flat, HNSW, IVF (inner product).
FAISS_HEADER = struct.Struct("<4siqqq?i")
FAISS_KINDS = (b"IxFI", b"IHNf", b"IwFl")
METRIC_INNER_PRODUCT = 0  # faiss.METRIC_INNER_PRODUCT
REBUILD = "tanya-reindex"
# A mapped file truncated under a running process kills it (SIGBUS) when a page past its new
# end is touched; a copy cannot be. A segment whose files come to at most this much is read
# into memory; a larger one (an archive's) stays mapped, as a build is never changed in place.
COPY_UP_TO = 64 * 1024 * 1024
# What articles.json holds per article besides its rows: index.ArticleInfo's fields.
ARTICLE_FIELDS = frozenset(
    ("doc_id", "title", "path", "url", "source", "published", "content_hash")
)


class ChunkStore:
    """The passages of one segment, read and parsed one at a time when asked for.

    Read with pread, not mapped: a file truncated under a running process then reads short
    and is named as damaged, where touching a mapped page past its end would kill the process.
    """

    def __init__(self, folder: Path, count: int | None = None, opening: Opening = READ_IN):
        self.path, self.rebuild = folder / CHUNKS, opening.rebuild
        reading = CHUNK_OFFSETS
        try:
            self.offsets = opening.array(folder / reading, np.int64, offsets_shape(count))
            reading = CHUNKS
            self._fd = os.open(self.path, os.O_RDONLY)
            weakref.finalize(self, os.close, self._fd)
            self._size = os.fstat(self._fd).st_size
            reading = CHUNK_OFFSETS
            check_ends(self.offsets, self._size)
        except BaseException as exc:
            exc.add_note(reading)
            raise

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Chunk:
        if not 0 <= i < len(self):
            raise IndexError(i)
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        offsets = self.path.with_name(CHUNK_OFFSETS)
        check_runs([start], [end], self._size, offsets, self.rebuild)
        data = os.pread(self._fd, end - start, start)
        try:
            if len(data) != end - start:
                raise ValueError("the file is shorter than its offsets say")
            return _chunk(json.loads(data))
        except (ValueError, TypeError, KeyError) as exc:  # UnicodeDecodeError, JSONDecodeError
            detail = f"holds a damaged passage (row {i}: {exc})"
            raise damaged(self.path, detail, self.rebuild) from exc

    @staticmethod
    def write(folder: Path, chunks: Sequence[Chunk]) -> None:
        offsets = [0]
        with open(folder / CHUNKS, "wb") as out:
            for chunk in chunks:
                line = (json.dumps(asdict(chunk), ensure_ascii=False) + "\n").encode("utf-8")
                out.write(line)
                offsets.append(offsets[-1] + len(line))
        np.save(folder / CHUNK_OFFSETS, np.asarray(offsets, dtype=np.int64))


def _chunk(record: object) -> Chunk:
    """A passage from its stored record; ValueError when the record cannot be one."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    chunk = Chunk(**record)
    sentences = tuple((int(a), int(b)) for a, b in chunk.sentences)
    numbers = (chunk.paragraph, chunk.start, chunk.end)
    if (
        not all(type(n) is int for n in numbers)
        or not isinstance(chunk.text, str)
        or chunk.end - chunk.start != len(chunk.text)
        or not sentences
        or any(not chunk.start <= a <= b <= chunk.end for a, b in sentences)
    ):
        raise ValueError("its offsets do not fit its text")
    return dataclasses.replace(chunk, sentences=sentences)


@dataclass(frozen=True)
class Shape:
    """What a segment's manifest entry says it holds, which its files must match (None: not
    known, for a build written before the manifest said it)."""

    count: int | None = None
    sentences: int | None = None
    dim: int | None = None

    @classmethod
    def of(cls, entry: dict, dim: int | None) -> Shape:
        return cls(entry.get("count"), entry.get("sentences"), dim)


@dataclass
class Segment:
    """One opened segment folder."""

    id: str
    folder: Path
    chunks: ChunkStore
    vectors: np.ndarray  # copied, or mapped when large
    sentence_vectors: np.ndarray  # copied, or mapped when large
    sentence_offsets: np.ndarray  # local, count + 1
    postings: Postings
    passage_terms: TermTable
    sentence_terms: TermTable
    opening: Opening = READ_IN  # read into memory (a small segment) or mapped
    _faiss: faiss.Index | None = None

    @property
    def count(self) -> int:
        return len(self.chunks)

    @property
    def faiss_index(self) -> faiss.Index:
        """The segment's FAISS index, opened when first needed (a reindex never searches)."""
        import faiss

        if self._faiss is None:
            path = self.folder / FAISS
            try:
                # A large segment's is mapped, not read: its vectors stay in the page cache,
                # shared and lazy. A small one's is read, as its other files are.
                flags = 0 if self.opening.copy else faiss.IO_FLAG_MMAP_IFC
                self._faiss = faiss.read_index(str(path), flags)
            except BaseException as exc:
                exc.add_note(f"segments/{self.id}/{FAISS}")
                raise
        return self._faiss

    @classmethod
    def open(
        cls, folder: Path, search: bool = True, shape: Shape = Shape(), rebuild: str = REBUILD
    ) -> Segment:
        """Open the segment at folder, each file checked against `shape` (its FAISS index too
        when `search`, else only that index's header); an error raised carries a note naming
        the file read."""
        opened: dict = {}
        n, sentences, dim = shape.count, shape.sentences, shape.dim
        reading = CHUNKS
        try:
            opening = Opening(_size(folder) <= COPY_UP_TO, rebuild)
            opened["chunks"] = ChunkStore(folder, n, opening)
            n = len(opened["chunks"])
            reading = "vectors.npy"
            opened["vectors"] = opening.array(folder / reading, np.float32, (n, dim))
            dim = opened["vectors"].shape[1]
            reading = "sentence_offsets.npy"
            offsets = opening.array(folder / reading, np.int64, (n + 1,))
            if sentences is None:
                sentences = int(offsets[-1])
            check_offsets(offsets, sentences)  # all read at load anyway (IndexData)
            opened["sentence_offsets"] = offsets
            reading = "sentence_vectors.npy"
            vectors = opening.array(folder / reading, np.float32, (sentences, dim))
            opened["sentence_vectors"] = vectors
            reading = "postings"
            opened["postings"] = Postings.load(folder, n, opening)
            reading = "passage_terms"
            opened["passage_terms"] = TermTable.load(folder / reading, n, opening)
            reading = "sentence_terms"
            opened["sentence_terms"] = TermTable.load(folder / reading, sentences, opening)
            reading = FAISS
            if not search:
                _check_faiss_header(folder / FAISS, n, dim)
        except BaseException as exc:
            inner = getattr(exc, "__notes__", None)  # the file a loader was reading
            exc.add_note(f"segments/{folder.name}/{inner[-1] if inner else reading}")
            raise
        segment = cls(folder.name, folder, **opened, opening=opening)
        if search:
            segment.faiss_index  # noqa: B018 - opened now, so a damaged file is named at load
        return segment

    def consistent(self) -> bool:
        """Whether every part of the segment has one entry per passage (or sentence)."""
        n = self.count
        sentences = int(self.sentence_offsets[-1]) if len(self.sentence_offsets) else -1
        return (
            len(self.vectors) == n
            and len(self.sentence_offsets) == n + 1
            and len(self.sentence_vectors) == sentences
            and (self._faiss is None or self._faiss.ntotal == n)
            and self.postings.count == n
            and self.passage_terms.count == n
            and self.sentence_terms.count == sentences
        )

    def articles(self) -> dict[str, dict]:
        """doc_id -> its ArticleInfo fields and its passages' rows `first`, `count`;
        IndexCorruptError naming the file when it cannot be those."""
        path = self.folder / ARTICLES
        try:
            articles = json.loads(path.read_bytes())
            if not isinstance(articles, dict):
                raise ValueError("not a JSON object")
            n = self.count
            # Plain loops and type(): an archive's segment has a hundred thousand articles.
            for fields in articles.values():
                first, count = fields["first"], fields["count"]
                if type(first) is not int or type(count) is not int:
                    raise ValueError("rows that are not numbers")
                if not (0 <= first and 0 < count and first + count <= n):
                    raise ValueError(f"rows {first} to {first + count} of {n}")
                if type(fields.get("title")) is not str or type(fields.get("path")) is not str:
                    raise ValueError("an article's fields are not what they should be")
                for key, value in fields.items():
                    if key in ARTICLE_FIELDS:
                        if value is not None and type(value) is not str:
                            raise ValueError("an article's fields are not what they should be")
                    elif key != "first" and key != "count":
                        raise ValueError("an article's fields are not what they should be")
        except (ValueError, TypeError, KeyError) as exc:  # UnicodeDecodeError, JSONDecodeError
            detail = f"cannot be read as the segment's articles ({exc})"
            raise damaged(path, detail, self.opening.rebuild) from exc
        except OSError as exc:
            detail = f"cannot be read ({exc.strerror or exc})"
            raise damaged(path, detail, self.opening.rebuild) from exc
        return articles


def _size(folder: Path) -> int:
    """The bytes of every file under folder."""
    return sum(
        _size(Path(entry.path)) if entry.is_dir() else entry.stat().st_size
        for entry in os.scandir(folder)
    )


def _check_faiss_header(path: Path, count: int, dim: int) -> None:
    """Damaged unless the FAISS file starts as one of ours with this many vectors of this
    dimension (what a reindex, which opens no FAISS index, can check cheaply)."""
    with open(path, "rb") as file:
        head = file.read(FAISS_HEADER.size)
    if len(head) < FAISS_HEADER.size:
        raise Damaged("is cut short")
    kind, found_dim, total, _, _, _, metric = FAISS_HEADER.unpack(head)
    if kind not in FAISS_KINDS or metric != METRIC_INNER_PRODUCT:
        raise Damaged("has a damaged header (not an inner-product FAISS index of ours)")
    if (found_dim, total) != (dim, count):
        raise Damaged(f"holds {total:,} vectors of {found_dim} where {count:,} of {dim} belong")


def link_folder(source: Path, target: Path) -> None:
    """Make target hold the files of source: hard links, or copies where links cannot be made."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_dir():
            link_folder(path, target / path.name)
            continue
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)


class Rows:
    """Arrays of several segments laid end to end: indexing by row gathers from each."""

    def __init__(self, parts: Sequence[np.ndarray]):
        self.parts = list(parts)
        self.bases = np.cumsum([0, *(len(p) for p in parts)])
        width = parts[0].shape[1:] if parts else (0,)
        self.shape = (int(self.bases[-1]), *width)
        self.dtype = parts[0].dtype if parts else np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, slice):
            key = np.arange(*key.indices(len(self)))
        if np.ndim(key) == 0:
            row = int(key)
            if row < 0:
                row += len(self)
            part = int(np.searchsorted(self.bases, row, side="right")) - 1
            return self.parts[part][row - self.bases[part]]
        rows = np.asarray(key, dtype=np.int64)
        if len(self.parts) == 1:
            return np.asarray(self.parts[0][rows])
        which = np.searchsorted(self.bases, rows, side="right") - 1
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        for part in np.unique(which):
            mask = which == part
            out[mask] = self.parts[part][rows[mask] - self.bases[part]]
        return out

    def __array__(self, dtype=None, copy=None):
        whole = (
            np.concatenate([np.asarray(p) for p in self.parts])
            if self.parts
            else np.zeros(self.shape, self.dtype)
        )
        return whole.astype(dtype) if dtype is not None else whole


class Terms:
    """Word sets of several segments (one per passage, or per sentence) as one row space."""

    def __init__(self, tables: Sequence[TermTable]):
        self.tables = list(tables)
        self.bases = np.cumsum([0, *(t.count for t in tables)])

    @property
    def count(self) -> int:
        return int(self.bases[-1])

    def features(
        self, rows: np.ndarray, question_tokens: frozenset[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """TermTable.features over rows of any segment, in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self.bases, rows, side="right") - 1
        parts = np.unique(which)
        if len(parts) == 1:
            return self.tables[parts[0]].features(rows - self.bases[parts[0]], question_tokens)
        typed = np.zeros((len(rows), 5), dtype=np.float64)
        shares = np.zeros(len(rows), dtype=np.float64)
        for part in parts:
            mask = which == part
            t, s = self.tables[part].features(rows[mask] - self.bases[part], question_tokens)
            typed[mask], shares[mask] = t, s
        return typed, shares


class Chunks:
    """The passages of every segment by row; iterating and len() see the live ones only."""

    def __init__(self, stores: Sequence[ChunkStore], live_rows: np.ndarray):
        self.stores = list(stores)
        self.bases = np.cumsum([0, *(len(s) for s in stores)])
        self.live_rows = live_rows

    def __getitem__(self, row: int) -> Chunk:
        row = int(row)
        part = int(np.searchsorted(self.bases, row, side="right")) - 1
        if not 0 <= row < self.bases[-1]:
            raise IndexError(row)
        return self.stores[part][row - int(self.bases[part])]

    def __len__(self) -> int:
        return len(self.live_rows)

    def __iter__(self) -> Iterator[Chunk]:
        for row in self.live_rows.tolist():
            yield self[row]
