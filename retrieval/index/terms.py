"""Word sets of passages and sentences, prepared at index time for re-ranking and highlighting."""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable
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
    offsets_shape,
)
from .keyword import tokenize
from .postings import TERM_BYTES, term_key

MONTHS_AND_DAYS = frozenset(
    """januari februari maret april mei juni juli agustus september oktober november desember
    january february march may june july august october december
    senin selasa rabu kamis jumat sabtu minggu monday tuesday wednesday thursday friday saturday
    sunday""".split()
)
NUMBER_WORDS = frozenset(
    "satu dua tiga empat lima enam tujuh delapan sembilan sepuluh sebelas belas puluh ratus "
    "ribu juta miliar triliun seratus seribu setengah".split()
)
CAPITALISED = re.compile(r"\b[A-Z][\w'-]*")
YEAR = re.compile(r"\b(?:1[5-9]\d\d|20\d\d)\b")
KINDS = ("tokens", "years", "names")
DIGIT, DATE, NUMBER_WORD = 1, 2, 4


def text_terms(text: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """A text's tokens, its years and its capitalised words (casefolded)."""
    years = frozenset(YEAR.findall(text))
    names = frozenset(m.group().casefold() for m in CAPITALISED.finditer(text))
    return frozenset(tokenize(text)), years, names


class TermTable:
    """For each of a list of texts, the ids of its tokens, years and names (ragged arrays).

    The vocabulary is sorted (stored as `postings.term_key` bytes) with a flag per word for
    digits, dates and number words, so a saved table is mapped from disk and opening it costs
    nothing, whatever its size.
    """

    def __init__(
        self,
        words: np.ndarray,
        flags: np.ndarray,
        ids: dict[str, np.ndarray],
        offsets: dict[str, np.ndarray],
        folder: Path | None = None,
        opening: Opening = READ_IN,
    ):
        self.words = words  # sorted term keys
        self.ids = ids
        self.offsets = offsets  # text i's ids of a kind are ids[kind][offsets[kind][i]:...[i + 1]]
        self.flags = flags  # per word: DIGIT | DATE | NUMBER_WORD bits
        self.folder, self.opening = folder, opening  # where it was loaded from, to name damage

    @property
    def count(self) -> int:
        return len(self.offsets["tokens"]) - 1

    @classmethod
    def build(cls, texts: Iterable[str]) -> TermTable:
        """Tokenise every text once."""
        builder = TermTableBuilder()
        for text in texts:
            builder.add(text)
        return builder.finish()

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {"words": self.words, "flags": self.flags}
        arrays |= {f"{kind}_ids": self.ids[kind] for kind in KINDS}
        return arrays | {f"{kind}_offsets": self.offsets[kind] for kind in KINDS}

    def save(self, folder: Path) -> None:
        """Write the table as a folder of arrays."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, values in self.arrays().items():
            np.save(folder / f"{name}.npy", values)

    @classmethod
    def load(cls, folder: Path, count: int | None = None, opening: Opening = READ_IN) -> TermTable:
        """A saved table (read into memory or mapped, as `opening` says), each file's header
        checked (`count` texts, when given) and the offsets' ends against the ids."""
        name = "words"
        try:
            words = opening.array(folder / "words.npy", "S", (None,))
            name = "flags"
            flags = opening.array(folder / "flags.npy", np.uint8, (len(words),))
            ids, offsets = {}, {}
            for kind in KINDS:
                name = f"{kind}_ids"
                ids[kind] = opening.array(folder / f"{name}.npy", np.int32, (None,))
                name = f"{kind}_offsets"
                shape = offsets_shape(count)
                offsets[kind] = opening.array(folder / f"{name}.npy", np.int64, shape)
                count = len(offsets[kind]) - 1  # every kind has one run per text
                check_ends(offsets[kind], len(ids[kind]))
        except BaseException as exc:
            exc.add_note(f"{folder.name}/{name}.npy")
            raise
        return cls(words, flags, ids, offsets, folder, opening)

    def lookup(self, words: frozenset[str]) -> np.ndarray:
        """The sorted ids of those of these words that the table knows."""
        if not words or not len(self.words):
            return np.zeros(0, dtype=np.int64)
        keys = np.array([term_key(w) for w in words], dtype=f"S{TERM_BYTES}")
        at = np.minimum(np.searchsorted(self.words, keys), len(self.words) - 1)
        return np.unique(at[self.words[at] == keys]).astype(np.int64)

    def _gather(self, kind: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids of these texts, concatenated, and for each id the position of its text."""
        offsets = self.offsets[kind]
        starts, ends = offsets[rows], offsets[rows + 1]
        if self.folder is not None:
            where = self.folder / f"{kind}_offsets.npy"
            check_runs(starts, ends, len(self.ids[kind]), where, self.opening.rebuild)
        positions, _ = ragged_positions(starts, ends - starts)
        values = np.asarray(self.ids[kind][positions])
        self._check(kind, values)
        return values, np.repeat(np.arange(len(rows)), ends - starts)

    def _check(self, kind: str, values: np.ndarray) -> None:
        """IndexCorruptError naming the file when an id read from it is not a word's."""
        if self.folder is not None:
            where = self.folder / f"{kind}_ids.npy"
            check_ids(values, len(self.words), where, "word numbers", self.opening.rebuild)

    def check(self) -> None:
        """Check every offset and id of the table (a health check's work: answering checks
        those it reads)."""
        if self.folder is None:
            return
        for kind in KINDS:
            try:
                check_offsets(self.offsets[kind], len(self.ids[kind]))
            except Damaged as exc:
                where = self.folder / f"{kind}_offsets.npy"
                raise damaged(where, str(exc), self.opening.rebuild) from exc
            self._check(kind, np.asarray(self.ids[kind]))

    def features(
        self, rows: np.ndarray, question_tokens: frozenset[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per text: what it offers that the question lacks, and the share of question words in it.

        The first are five columns: novel numbers, years, dates, number words and capitalised
        names, each capped and scaled to 0..1.
        """
        rows = np.asarray(rows, dtype=np.int64)
        n = len(rows)
        question = self.lookup(question_tokens)

        def novel(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            values, owner = self._gather(kind, rows)
            return values, owner, ~_member(values, question)

        def count(owner: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return np.bincount(owner[mask], minlength=n)

        values, owner, new = novel("tokens")
        flags = self.flags[values]
        _, year_owner, new_year = novel("years")
        _, name_owner, new_name = novel("names")
        typed = np.column_stack(
            [
                np.minimum(count(owner, new & (flags & DIGIT > 0)), 3) / 3,
                np.minimum(count(year_owner, new_year), 2) / 2,
                count(owner, new & (flags & DATE > 0)) > 0,
                count(owner, new & (flags & NUMBER_WORD > 0)) > 0,
                np.minimum(count(name_owner, new_name), 5) / 5,
            ]
        ).astype(np.float64)
        return typed, count(owner, ~new) / max(1, len(question_tokens))


class TermTableBuilder:
    """A TermTable built one text at a time (a segment's writer feeds it as passages are
    written): 4 bytes an id, not a Python int's 36, as an archive has tens of millions."""

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.parts = {kind: array("i") for kind in KINDS}
        self.lengths = {kind: array("i") for kind in KINDS}

    def add(self, text: str) -> None:
        """The next text."""
        vocab = self.vocab
        for kind, terms in zip(KINDS, text_terms(text), strict=True):
            self.parts[kind].extend([vocab.setdefault(w, len(vocab)) for w in terms])
            self.lengths[kind].append(len(terms))

    def finish(self) -> TermTable:
        vocabulary = list(self.vocab)
        keys = [term_key(w) for w in vocabulary]
        words = np.array(keys, dtype=f"S{max(map(len, keys), default=1) or 1}")
        order = np.argsort(words, kind="stable")
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        flags = np.array(
            [
                (DIGIT if w[:1].isdigit() else 0)
                | (DATE if w in MONTHS_AND_DAYS or (w[:1].isdigit() and "/" in w) else 0)
                | (NUMBER_WORD if w in NUMBER_WORDS else 0)
                for w in vocabulary
            ],
            dtype=np.uint8,
        )
        return TermTable(
            words[order],
            flags[order],
            {kind: rank[np.frombuffer(self.parts[kind], dtype=np.int32)] for kind in KINDS},
            {
                kind: np.concatenate(
                    [[0], np.cumsum(np.frombuffer(self.lengths[kind], np.int32))]
                ).astype(np.int64)
                for kind in KINDS
            },
        )


def ragged_positions(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the runs [start, start + length) laid end to end, and where each run
    begins among them (for np.*.reduceat)."""
    firsts = np.cumsum(lengths) - lengths
    return np.repeat(starts - firsts, lengths) + np.arange(lengths.sum()), firsts


def _member(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """Which values occur in sorted_ids (faster than np.isin for a short question)."""
    if not len(sorted_ids):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return sorted_ids[at] == values
