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

import json
import mmap
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from ..corpus.chunking import Chunk
from .postings import Postings
from .terms import TermTable

CHUNKS, CHUNK_OFFSETS, ARTICLES = "chunks.jsonl", "chunk_offsets.npy", "articles.json"


class ChunkStore:
    """The passages of one segment, parsed one at a time when asked for."""

    def __init__(self, folder: Path):
        self.offsets = np.load(folder / CHUNK_OFFSETS, mmap_mode="r")
        with open(folder / CHUNKS, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            self._data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Chunk:
        if not 0 <= i < len(self):
            raise IndexError(i)
        record = json.loads(self._data[int(self.offsets[i]) : int(self.offsets[i + 1])])
        record["sentences"] = tuple(tuple(s) for s in record["sentences"])
        return Chunk(**record)

    @staticmethod
    def write(folder: Path, chunks: Sequence[Chunk]) -> None:
        offsets = [0]
        with open(folder / CHUNKS, "wb") as out:
            for chunk in chunks:
                line = (json.dumps(asdict(chunk), ensure_ascii=False) + "\n").encode("utf-8")
                out.write(line)
                offsets.append(offsets[-1] + len(line))
        np.save(folder / CHUNK_OFFSETS, np.asarray(offsets, dtype=np.int64))


@dataclass
class Segment:
    """One opened segment folder."""

    id: str
    folder: Path
    chunks: ChunkStore
    vectors: np.ndarray  # mapped
    sentence_vectors: np.ndarray  # mapped
    sentence_offsets: np.ndarray  # local, count + 1
    postings: Postings
    passage_terms: TermTable
    sentence_terms: TermTable
    _faiss: faiss.Index | None = None

    @property
    def count(self) -> int:
        return len(self.chunks)

    @property
    def faiss_index(self) -> faiss.Index:
        """The segment's FAISS index, opened when first needed (a reindex never searches)."""
        if self._faiss is None:
            try:
                # Mapped, not read: the flat vectors stay in the page cache, shared and lazy.
                self._faiss = faiss.read_index(
                    str(self.folder / "faiss.index"), faiss.IO_FLAG_MMAP_IFC
                )
            except BaseException as exc:
                exc.add_note(f"segments/{self.id}/faiss.index")
                raise
        return self._faiss

    @classmethod
    def open(cls, folder: Path, search: bool = True) -> Segment:
        """Open the segment at folder (its FAISS index too when `search`); an error raised
        carries a note naming the file read."""
        opened: dict = {}
        reading = CHUNKS
        try:
            opened["chunks"] = ChunkStore(folder)
            reading = "vectors.npy"
            opened["vectors"] = np.load(folder / reading, mmap_mode="r")
            reading = "sentence_vectors.npy"
            opened["sentence_vectors"] = np.load(folder / reading, mmap_mode="r")
            reading = "sentence_offsets.npy"
            opened["sentence_offsets"] = np.load(folder / reading)
            reading = "postings"
            opened["postings"] = Postings.load(folder)
            reading = "passage_terms"
            opened["passage_terms"] = TermTable.load(folder / reading)
            reading = "sentence_terms"
            opened["sentence_terms"] = TermTable.load(folder / reading)
        except BaseException as exc:
            inner = getattr(exc, "__notes__", None)  # the file a loader was reading
            exc.add_note(f"segments/{folder.name}/{inner[-1] if inner else reading}")
            raise
        segment = cls(folder.name, folder, **opened)
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
        """doc_id -> its ArticleInfo fields and its passages' rows `first`, `count`."""
        return json.loads((self.folder / ARTICLES).read_text("utf-8"))


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
