"""Keyword side of search: BM25 over per-segment postings, scored at query time.

Each segment of the index holds its own postings (terms, and per term the documents and term
frequencies) and document lengths. Document frequencies, the document count and the average
length are summed over the segments at load time, less what the deleted documents held, so
the scores equal those of a fresh build over the live documents, whatever was added, changed
or removed since. The scoring is bm25s's "lucene" variant (k1 1.5, b 0.75), which the
keyword side used before it was incremental.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrays import (
    READ_IN,
    Damaged,
    Opening,
    check_ends,
    check_ids,
    check_offsets,
    check_runs,
    damaged,
)
from .keyword import tokenize

K1, B = 1.5, 0.75
# Terms are stored as fixed-width UTF-8; a longer one keeps its start and a hash of the rest.
TERM_BYTES = 64
FILES = ("kw_terms.npy", "kw_offsets.npy", "kw_docs.npy", "kw_tf.npy", "kw_lengths.npy")


def term_key(token: str) -> bytes:
    """The stored form of a token: its UTF-8, at most TERM_BYTES bytes."""
    raw = token.encode("utf-8")
    if len(raw) <= TERM_BYTES:
        return raw
    return raw[: TERM_BYTES - 16] + hashlib.blake2b(raw, digest_size=8).hexdigest().encode()


@dataclass
class Postings:
    """One segment's postings: `terms` sorted; term t's postings are [offsets[t], offsets[t+1])."""

    terms: np.ndarray  # S<=64, sorted
    offsets: np.ndarray  # int64, len(terms) + 1
    docs: np.ndarray  # int32, local document numbers, ascending within a term
    tf: np.ndarray  # uint16
    lengths: np.ndarray  # int32, tokens per document
    folder: Path | None = None  # where it was loaded from, to name a damaged file
    opening: Opening = READ_IN

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]]) -> Postings:
        """Postings of these documents (token lists, in document order; read once, so a
        generator keeps only one document's tokens in memory)."""
        builder = PostingsBuilder()
        for tokens in token_lists:
            builder.add(tokens)
        return builder.finish()

    @property
    def count(self) -> int:
        return len(self.lengths)

    def save(self, folder: Path) -> None:
        arrays = (self.terms, self.offsets, self.docs, self.tf, self.lengths)
        for name, values in zip(FILES, arrays, strict=True):
            np.save(folder / name, values)

    @classmethod
    def load(cls, folder: Path, count: int | None = None, opening: Opening = READ_IN) -> Postings:
        """Opened from disk (read into memory or mapped, as `opening` says), each file's
        header checked (`count` documents, when given) and the offsets' ends against the
        postings."""
        name = FILES[0]
        try:
            terms = opening.array(folder / name, "S", (None,))
            name = FILES[4]
            lengths = opening.array(folder / name, np.int32, (count,))
            name = FILES[2]
            docs = opening.array(folder / name, np.int32, (None,))
            name = FILES[3]
            tf = opening.array(folder / name, np.uint16, (len(docs),))
            name = FILES[1]
            offsets = opening.array(folder / name, np.int64, (len(terms) + 1,))
            check_ends(offsets, len(docs))
        except BaseException as exc:
            exc.add_note(name)
            raise
        return cls(terms, offsets, docs, tf, lengths, folder, opening)

    def span(self, term: int) -> tuple[int, int]:
        """Where the term's postings lie: [start, end); IndexCorruptError naming the file
        when that is not inside the postings."""
        start, end = int(self.offsets[term]), int(self.offsets[term + 1])
        if self.folder is not None:
            check_runs([start], [end], len(self.docs), self.folder / FILES[1], self.opening.rebuild)
        return start, end

    def documents(self, start: int, end: int) -> np.ndarray:
        """The document numbers of postings [start, end); IndexCorruptError naming the file
        when one is not a document of this segment."""
        docs = np.asarray(self.docs[start:end])
        if self.folder is not None:
            where = self.folder / FILES[2]
            check_ids(docs, len(self.lengths), where, "document numbers", self.opening.rebuild)
        return docs

    def check(self) -> None:
        """Check every offset and document number (a health check's work: searching checks
        those it reads)."""
        if self.folder is None:
            return
        try:
            check_offsets(self.offsets, len(self.docs))
        except Damaged as exc:
            raise damaged(self.folder / FILES[1], str(exc), self.opening.rebuild) from exc
        self.documents(0, len(self.docs))

    def find(self, key: bytes) -> int:
        """The term's number, or -1."""
        at = int(np.searchsorted(self.terms, key))
        return at if at < len(self.terms) and self.terms[at] == key else -1

    def doc_freq(self, term: int) -> int:
        start, end = self.span(term)
        return end - start

    def term_counts(self, token_lists: Sequence[Sequence[str]]) -> dict[int, int]:
        """For these documents' tokens: term number -> how many of the documents hold it."""
        counts: dict[int, int] = {}
        for tokens in token_lists:
            for key in {term_key(t) for t in tokens}:
                term = self.find(key)
                if term >= 0:
                    counts[term] = counts.get(term, 0) + 1
        return counts


class PostingsBuilder:
    """Postings built one document at a time: per document, each of its distinct terms once
    with its count (4 + 2 bytes an entry, in arrays, not Python ints), sorted by term at the
    end. A segment's writer feeds it as passages are written."""

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.ids, self.tf = array("i"), array("H")
        self.distinct, self.lengths = array("i"), array("i")

    def add(self, tokens: Sequence[str]) -> None:
        """The next document's tokens."""
        counts = Counter(tokens)
        vocab = self.vocab
        self.ids.extend([vocab.setdefault(t, len(vocab)) for t in counts])
        self.tf.extend([min(c, 65535) for c in counts.values()])
        self.distinct.append(len(counts))
        self.lengths.append(len(tokens))

    def finish(self) -> Postings:
        """The postings: terms sorted, each term's documents ascending."""
        lengths = np.frombuffer(self.lengths, dtype=np.int32).copy()
        if not self.vocab:
            empty = np.zeros(0, dtype=np.int32)
            return Postings(np.zeros(0, dtype="S1"), np.zeros(1, np.int64), empty, empty, lengths)
        keys = [term_key(t) for t in self.vocab]
        self.vocab = {}
        words = np.array(keys, dtype=f"S{max(len(k) for k in keys)}")
        del keys
        order = np.argsort(words, kind="stable")
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        terms = rank[np.frombuffer(self.ids, dtype=np.int32)]
        self.ids = array("i")
        # Documents come in order, so a stable sort by term keeps each term's ascending.
        by_term = np.argsort(terms, kind="stable")
        terms = terms[by_term]
        per_document = np.frombuffer(self.distinct, dtype=np.int32)
        docs = np.repeat(np.arange(len(per_document), dtype=np.int32), per_document)[by_term]
        tf = np.frombuffer(self.tf, dtype=np.uint16)[by_term]
        self.tf = array("H")
        offsets = np.searchsorted(terms, np.arange(len(words) + 1)).astype(np.int64)
        return Postings(words[order], offsets, docs, tf, lengths)


@dataclass(frozen=True)
class Deleted:
    """What the deleted documents of one segment held: their numbers, per-term document counts
    and total length, so the live statistics are the segment's less these."""

    docs: np.ndarray  # int64, sorted local numbers
    terms: np.ndarray  # int64 term numbers
    counts: np.ndarray  # int64, documents per term
    length: int

    @classmethod
    def none(cls) -> Deleted:
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, empty, empty, 0)

    def plus(self, postings: Postings, docs: np.ndarray, token_lists) -> Deleted:
        """These deletions and more: documents `docs` (not deleted yet) with these tokens."""
        counts = dict(zip(self.terms.tolist(), self.counts.tolist(), strict=True))
        for term, k in postings.term_counts(token_lists).items():
            counts[term] = counts.get(term, 0) + k
        terms = np.asarray(sorted(counts), dtype=np.int64)
        return Deleted(
            np.union1d(self.docs, np.asarray(docs, dtype=np.int64)),
            terms,
            np.asarray([counts[t] for t in terms.tolist()], dtype=np.int64),
            self.length + int(np.asarray(postings.lengths)[np.asarray(docs, np.int64)].sum()),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "docs": self.docs,
            "terms": self.terms,
            "counts": self.counts,
            "length": np.asarray([self.length]),
        }

    @classmethod
    def from_arrays(cls, arrays) -> Deleted:
        return cls(
            np.asarray(arrays["docs"], dtype=np.int64),
            np.asarray(arrays["terms"], dtype=np.int64),
            np.asarray(arrays["counts"], dtype=np.int64),
            int(np.asarray(arrays["length"])[0]),
        )


class KeywordIndex:
    """BM25 over the live documents of several segments, laid end to end as one row space."""

    def __init__(
        self,
        segments: Sequence[Postings],
        deleted: Sequence[Deleted],
        stemming: bool,
    ):
        self.stemming = stemming
        self._segments = list(segments)
        self._deleted = {
            i: dict(zip(d.terms.tolist(), d.counts.tolist(), strict=True))
            for i, d in enumerate(deleted)
            if len(d.terms)
        }
        self._bases = np.cumsum([0, *(s.count for s in segments)])
        self.size = int(self._bases[-1])
        dead = [
            base + d.docs for base, d in zip(self._bases[:-1], deleted, strict=True) if len(d.docs)
        ]
        self._dead = np.sort(np.concatenate(dead)) if dead else np.zeros(0, dtype=np.int64)
        self.live = self.size - len(self._dead)
        self.live_mask = np.ones(self.size, dtype=bool)  # per row: not deleted
        self.live_mask[self._dead] = False
        total = sum(int(np.asarray(s.lengths).sum(dtype=np.int64)) for s in segments)
        total -= sum(d.length for d in deleted)
        average = total / self.live if self.live else 1.0
        # k1 * (1 - b + b * length / average) per document, for the current average.
        self._norms = [
            (K1 * ((1 - B) + B * np.asarray(s.lengths, dtype=np.float32) / np.float32(average)))
            for s in segments
        ]

    def _terms(self, tokens: Sequence[str]) -> list[_Term]:
        """The known terms of these tokens, each once with how often it was given."""
        times: dict[str, int] = {}
        for token in tokens:
            times[token] = times.get(token, 0) + 1
        terms = []
        for token, repeat in times.items():
            key = term_key(token)
            found, df = [], 0
            for i, segment in enumerate(self._segments):
                term = segment.find(key)
                if term >= 0:
                    found.append((i, *segment.span(term)))
                    df += segment.doc_freq(term) - self._deleted.get(i, {}).get(term, 0)
            if df > 0:
                idf = np.float32(np.log(1 + (self.live - df + 0.5) / (df + 0.5)))
                terms.append(_Term(repeat, idf, df, found))
        return terms

    def doc_freq(self, token: str) -> int:
        """Live documents holding the token."""
        terms = self._terms([token])
        return terms[0].df if terms else 0

    def _add(self, scores: np.ndarray, term: _Term) -> np.ndarray:
        """Add one term's scores over all its postings; the rows it touched."""
        touched = []
        for i, a, b in term.found:
            segment = self._segments[i]
            docs = segment.documents(a, b)
            tf = segment.tf[a:b].astype(np.float32)
            part = tf / (self._norms[i][docs] + tf)
            part *= term.idf * np.float32(term.repeat)
            rows = self._bases[i] + docs
            scores[rows] += part
            touched.append(rows)
        return np.concatenate(touched) if touched else np.zeros(0, dtype=np.int64)

    def _at(self, term: _Term, rows: np.ndarray) -> np.ndarray:
        """One term's scores at these rows (ascending; 0 where it does not occur)."""
        out = np.zeros(len(rows), dtype=np.float32)
        for i, a, b in term.found:
            segment = self._segments[i]
            inside = (rows >= self._bases[i]) & (rows < self._bases[i + 1])
            if not inside.any():
                continue
            local = rows[inside] - self._bases[i]
            docs = np.asarray(segment.docs[a:b])
            # Look the rows up in the postings (both ascending: numpy walks them in step).
            at = np.minimum(np.searchsorted(docs, local), len(docs) - 1)
            hit = docs[at] == local
            tf = np.asarray(segment.tf[a:b])[at[hit]].astype(np.float32)
            part = tf / (self._norms[i][local[hit]] + tf)
            part *= term.idf * np.float32(term.repeat)
            out[np.flatnonzero(inside)[hit]] = part
        return out

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for this query (zeros when no word is known)."""
        return self.scores_of(tokenize(query, self.stemming))

    def scores_of(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every row for these tokens (already stemmed as indexed); a deleted
        row scores 0. A token given twice counts twice."""
        scores = np.zeros(self.size, dtype=np.float32)
        for term in self._terms(tokens):
            self._add(scores, term)
        if len(self._dead):
            scores[self._dead] = 0.0
        return scores

    def scores_at(self, tokens: Sequence[str], rows: np.ndarray) -> np.ndarray:
        """scores_of(tokens)[rows], without scoring the other rows."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        ascending = rows[order]
        out = np.zeros(len(rows), dtype=np.float32)
        for term in self._terms(tokens):
            out[order] += self._at(term, ascending)
        out[~self.live_mask[rows]] = 0.0
        return out

    def top(
        self, tokens: Sequence[str], k: int, hidden: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the k best-scoring live rows with a score above 0, and their scores,
        as scores_of would rank them (ties at the cut in any order); `hidden` rows are left out.

        Rare words are scored over all their postings first. Once the k-th best of the rows
        they reach beats what the remaining, frequent words could add to any row at most (each
        term adds less than its idf), no other row can enter the top k: the frequent words are
        then only scored at the rows reached, not over their long postings.
        """
        terms = sorted(self._terms(tokens), key=lambda t: -t.idf * t.repeat)
        if not terms or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        allowed = self.live_mask
        if hidden is not None and len(hidden):
            allowed = allowed.copy()
            allowed[np.asarray(hidden, dtype=np.int64)] = False
        # What the terms from n on can add to a row at most.
        bounds = [*np.cumsum([float(t.idf) * t.repeat for t in reversed(terms)])[::-1], 0.0]
        scores = np.zeros(self.size, dtype=np.float32)
        seen = np.zeros(self.size, dtype=bool)
        reached: list[np.ndarray] = []
        for n, term in enumerate(terms):
            rows = self._add(scores, term)
            rows = rows[~seen[rows]]
            seen[rows] = True
            reached.append(rows[allowed[rows]])
            candidates = np.concatenate(reached)
            if n + 1 < len(terms):
                if len(candidates) < k:
                    continue
                kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
                if kth <= bounds[n + 1]:
                    continue
                ascending = None
                for later in terms[n + 1 :]:
                    if 16 * len(candidates) > later.postings:  # cheaper to score them all
                        self._add(scores, later)
                        continue
                    if ascending is None:  # runs of ascending rows: a merge, not a sort
                        ascending = np.sort(candidates, kind="stable")
                    scores[ascending] += self._at(later, ascending)
            values = scores[candidates]
            keep = values > 0
            candidates, values = candidates[keep], values[keep]
            if len(candidates) > k:
                best = np.argpartition(-values, k - 1)[:k]
                candidates, values = candidates[best], values[best]
            order = np.argsort(-values, kind="stable")
            return candidates[order], values[order]
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)

    def known(self, tokens: Sequence[str]) -> int:
        """How many of these tokens occur in the live documents."""
        return sum(1 for t in tokens if self.doc_freq(t) > 0)


@dataclass(frozen=True)
class _Term:
    """A query term: how often it was given, its idf and document frequency, and where its
    postings lie: (segment, start, end)."""

    repeat: int
    idf: np.float32
    df: int
    found: list[tuple[int, int, int]]

    @property
    def postings(self) -> int:
        return sum(b - a for _, a, b in self.found)
