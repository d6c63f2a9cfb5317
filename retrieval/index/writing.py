"""A new segment written as its passages come: each batch's passages, vectors and sentence
vectors go to disk at once, and its words into compact builders of the postings and word
sets, so the memory a build needs does not grow with the segment (only those builders do,
by a few bytes a word). The FAISS index is built afterwards from the written vectors
(folder.write_faiss).

What a segment holds is described in segments.py; the files written here are the same.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..corpus.chunking import Chunk
from .keyword import tokenize
from .postings import Deleted, PostingsBuilder
from .segments import ARTICLES, CHUNK_OFFSETS, CHUNKS, Segment
from .terms import TermTableBuilder, ragged_positions

VECTORS, SENTENCE_VECTORS, SENTENCE_OFFSETS = (
    "vectors.npy",
    "sentence_vectors.npy",
    "sentence_offsets.npy",
)
# Rows of an old segment carried into a new one per step.
CARRY_STEP = 4096


class ArrayWriter:
    """Rows appended to a .npy file; its header, which says how many, is written at the end
    (numpy's own header leaves room for the first axis to grow)."""

    def __init__(self, path: Path, dtype: np.dtype, width: int):
        self.path, self.dtype, self.width, self.rows = path, np.dtype(dtype), width, 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._header()
        self._data_start = self._file.tell()

    def _header(self) -> None:
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.rows, self.width),
        }
        np.lib.format.write_array_header_1_0(self._file, header)

    def add(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if values.ndim != 2 or values.shape[1] != self.width:
            raise ValueError(f"rows of {values.shape[1:]} where ({self.width},) belong")
        self._file.write(memoryview(values).cast("B"))
        self.rows += len(values)

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.seek(0)
        self._header()
        if self._file.tell() != self._data_start:  # cannot happen below 10**21 rows
            raise ValueError(f"{self.path.name}: the final header does not fit its place")
        self._file.close()


class ChunkWriter:
    """A segment's passages as JSON lines, with the offsets of each (ChunkStore reads them)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._file = open(folder / CHUNKS, "wb")  # noqa: SIM115 - closed by close()
        self.offsets = array("q", [0])

    def add(self, chunk: Chunk) -> None:
        line = (json.dumps(asdict(chunk), ensure_ascii=False) + "\n").encode("utf-8")
        self._file.write(line)
        self.offsets.append(self.offsets[-1] + len(line))

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            np.save(self.folder / CHUNK_OFFSETS, np.frombuffer(self.offsets, dtype=np.int64))


class SegmentWriter:
    """One new segment folder, written as passages are added; finish() completes all but its
    FAISS index and returns its manifest entry (less the FAISS settings).

    `sentence_vectors`: whether the segment keeps a vector per sentence (for highlighting);
    without them add() takes None for the sentence vectors.
    """

    def __init__(self, folder: Path, dim: int, stemming: bool, sentence_vectors: bool = True):
        folder.mkdir(parents=True)
        self.folder, self.dim, self.stemming = folder, dim, stemming
        self.chunks = ChunkWriter(folder)
        self.vectors = ArrayWriter(folder / VECTORS, np.float32, dim)
        self.sentence_vectors = (
            ArrayWriter(folder / SENTENCE_VECTORS, np.float32, dim) if sentence_vectors else None
        )
        self.sentence_counts = array("q")
        self.postings = PostingsBuilder()
        self.passage_terms = TermTableBuilder()
        self.sentence_terms = TermTableBuilder()
        self.articles: dict[str, dict] = {}  # doc_id -> its fields, first row and row count
        self.count = 0

    def add(
        self,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        sentence_vectors: np.ndarray | None,
        info: Callable[[str], dict],
    ) -> None:
        """Passages in row order with their vectors, their sentences' vectors, and what
        gives the fields of an article by its id (ArticleInfo's)."""
        if len(vectors) != len(chunks):
            raise ValueError(f"{len(vectors)} vectors for {len(chunks)} passages")
        sentences = sum(len(c.sentences) for c in chunks)
        if self.sentence_vectors is not None:
            if sentence_vectors is None or len(sentence_vectors) != sentences:
                raise ValueError(f"sentence vectors for {sentences} sentences do not match")
            self.sentence_vectors.add(sentence_vectors)
        self.vectors.add(vectors)
        for chunk in chunks:
            self.chunks.add(chunk)
            held = self.articles.get(chunk.doc_id)
            if held is None:
                fields = {**info(chunk.doc_id), "first": self.count, "count": 1}
                self.articles[chunk.doc_id] = fields
            elif held["first"] + held["count"] == self.count:
                held["count"] += 1
            else:
                raise ValueError(f"the passages of {chunk.doc_id} are not in one run")
            self.count += 1
            self.sentence_counts.append(len(chunk.sentences))
            self.postings.add(tokenize(chunk.text, self.stemming))
            self.passage_terms.add(chunk.text)
            for a, b in chunk.sentences:
                self.sentence_terms.add(chunk.text[a - chunk.start : b - chunk.start])

    def carry(self, segment: Segment, gone: Deleted) -> None:
        """An old segment's live passages, their vectors and articles, read in steps."""
        live = np.setdiff1d(np.arange(segment.count), gone.docs)
        infos = {
            doc_id: {k: v for k, v in fields.items() if k not in ("first", "count")}
            for doc_id, fields in segment.articles().items()
        }
        offsets = segment.sentence_offsets
        for start in range(0, len(live), CARRY_STEP):
            rows = live[start : start + CARRY_STEP]
            chunks = [segment.chunks[int(r)] for r in rows]
            vectors = np.asarray(segment.vectors[rows], dtype=np.float32)
            sentence_vectors = None
            if self.sentence_vectors is not None:
                starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
                positions, _ = ragged_positions(starts, lengths)
                sentence_vectors = np.asarray(segment.sentence_vectors[positions], np.float32)
            self.add(chunks, vectors, sentence_vectors, infos.__getitem__)

    def finish(self) -> dict:
        """Close every file and write the postings, word sets and articles; the segment's
        manifest entry without its FAISS settings."""
        self.chunks.close()
        self.vectors.close()
        if self.sentence_vectors is not None:
            self.sentence_vectors.close()
        counts = np.frombuffer(self.sentence_counts, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        np.save(self.folder / SENTENCE_OFFSETS, offsets)
        self.postings.finish().save(self.folder)
        self.postings = None
        self.passage_terms.finish().save(self.folder / "passage_terms")
        self.passage_terms = None
        self.sentence_terms.finish().save(self.folder / "sentence_terms")
        self.sentence_terms = None
        (self.folder / ARTICLES).write_text(json.dumps(self.articles, ensure_ascii=False), "utf-8")
        return {
            "id": self.folder.name,
            "count": self.count,
            "sentences": int(offsets[-1]),
            "deleted": 0,
            "articles": len(self.articles),
        }

    def close(self) -> None:
        """Close the open files (after a failure: the build folder is then removed)."""
        self.chunks.close()
        self.vectors.close()
        if self.sentence_vectors is not None:
            self.sentence_vectors.close()


def batches(items: Iterable, size: int) -> Iterator[list]:
    """Lists of up to `size` items of the iterator, in order."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
