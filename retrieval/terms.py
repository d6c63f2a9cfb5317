"""Word sets of passages and sentences, prepared at index time for re-ranking and highlighting."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .keyword import tokenize

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


def text_terms(text: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """A text's tokens, its years and its capitalised words (casefolded)."""
    years = frozenset(YEAR.findall(text))
    names = frozenset(m.group().casefold() for m in CAPITALISED.finditer(text))
    return frozenset(tokenize(text)), years, names


class TermTable:
    """For each of a list of texts, the ids of its tokens, years and names (ragged arrays)."""

    def __init__(
        self, words: np.ndarray, ids: dict[str, np.ndarray], offsets: dict[str, np.ndarray]
    ):
        self.words = words
        self.ids = ids
        self.offsets = offsets  # text i's ids of a kind are ids[kind][offsets[kind][i]:...[i + 1]]
        vocabulary = words.tolist()
        self.vocab = {w: i for i, w in enumerate(vocabulary)}
        self.digit = np.array([w[:1].isdigit() for w in vocabulary], dtype=bool)
        self.date = np.array(
            [w in MONTHS_AND_DAYS or (w[:1].isdigit() and "/" in w) for w in vocabulary],
            dtype=bool,
        )
        self.number_word = np.array([w in NUMBER_WORDS for w in vocabulary], dtype=bool)

    @property
    def count(self) -> int:
        return len(self.offsets["tokens"]) - 1

    @classmethod
    def build(cls, texts: Sequence[str]) -> TermTable:
        """Tokenise every text once."""
        vocab: dict[str, int] = {}
        parts: dict[str, list[int]] = {kind: [] for kind in KINDS}
        lengths: dict[str, list[int]] = {kind: [] for kind in KINDS}
        for text in texts:
            for kind, terms in zip(KINDS, text_terms(text), strict=True):
                ids = sorted(vocab.setdefault(w, len(vocab)) for w in terms)
                parts[kind].extend(ids)
                lengths[kind].append(len(ids))
        words = np.array(list(vocab), dtype=str) if vocab else np.zeros(0, dtype="<U1")
        return cls(
            words,
            {kind: np.asarray(parts[kind], dtype=np.int64) for kind in KINDS},
            {kind: np.cumsum([0, *lengths[kind]], dtype=np.int64) for kind in KINDS},
        )

    def save(self, path: Path) -> None:
        arrays = {f"{kind}_ids": self.ids[kind] for kind in KINDS}
        arrays |= {f"{kind}_offsets": self.offsets[kind] for kind in KINDS}
        with open(path, "wb") as out:
            np.savez(out, words=self.words, **arrays)

    @classmethod
    def load(cls, path: Path) -> TermTable:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                data["words"],
                {kind: data[f"{kind}_ids"] for kind in KINDS},
                {kind: data[f"{kind}_offsets"] for kind in KINDS},
            )

    def _gather(self, kind: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids of these texts, concatenated, and for each id the position of its text."""
        offsets = self.offsets[kind]
        starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
        positions, _ = ragged_positions(starts, lengths)
        return self.ids[kind][positions], np.repeat(np.arange(len(rows)), lengths)

    def features(
        self, rows: np.ndarray, question_tokens: frozenset[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per text: what it offers that the question lacks, and the share of question words in it.

        The first are five columns: novel numbers, years, dates, number words and capitalised
        names, each capped and scaled to 0..1.
        """
        rows = np.asarray(rows, dtype=np.int64)
        n = len(rows)
        known = sorted(self.vocab[w] for w in question_tokens if w in self.vocab)
        question = np.asarray(known, dtype=np.int64)

        def novel(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            values, owner = self._gather(kind, rows)
            return values, owner, ~_member(values, question)

        def count(owner: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return np.bincount(owner[mask], minlength=n)

        values, owner, new = novel("tokens")
        _, year_owner, new_year = novel("years")
        _, name_owner, new_name = novel("names")
        typed = np.column_stack(
            [
                np.minimum(count(owner, new & self.digit[values]), 3) / 3,
                np.minimum(count(year_owner, new_year), 2) / 2,
                count(owner, new & self.date[values]) > 0,
                count(owner, new & self.number_word[values]) > 0,
                np.minimum(count(name_owner, new_name), 5) / 5,
            ]
        ).astype(np.float64)
        return typed, count(owner, ~new) / max(1, len(question_tokens))


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
