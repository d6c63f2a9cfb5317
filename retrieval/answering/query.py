"""A question prepared once: its words, stems, content words, answer type, language, vector.

Every stage (keyword search, re-ranking, declining, follow-ups, highlighting, the reader)
reads this value instead of tokenising the text again.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..index.keyword import tokenize

# Pronouns: no word of a question's topic.
ANAPHORA = frozenset(
    "itu ini tersebut dia ia beliau mereka nya -nya sana situ begitu "
    "it that this he she they them his her their there then".split()
)
# Question words: no word of a question's topic either.
QUESTION_WORDS = frozenset(
    "apa apakah siapa siapakah kapan kapankah berapa berapakah mana manakah dimana dimanakah "
    "bagaimana mengapa kenapa yang di ke dari what who when where why how which".split()
)
# Common English words: enough of them mark a question as English.
ENGLISH_WORDS = frozenset(
    "the a an of on in at to for from by with about is are was were be been do does did "
    "what who whom whose which when where why how many much and or not that this it its "
    "has have had will would can could should".split()
)
# The kind of answer a question asks for, from its question word (Indonesian and English).
QUESTION_TYPES = (
    ("date", re.compile(r"\b(kapan\w*|tanggal|tahun berapa\w*|sejak|when|what year)\b")),
    ("number", re.compile(r"\b(berapa\w*|how many|how much)\b")),
    ("person", re.compile(r"\b(siapa\w*|who|whom)\b")),
    ("place", re.compile(r"\b(di ?mana\w*|mana\w*|where)\b")),
)
TYPES = ("date", "number", "person", "place", "other")


@functools.cache
def stop_words() -> frozenset[str]:
    """Words that say nothing of a question's topic: Sastrawi's Indonesian stop words,
    question words, pronouns and common English words."""
    from Sastrawi.StopWordRemover.StopWordRemoverFactory import StopWordRemoverFactory

    words = StopWordRemoverFactory().get_stop_words()
    return frozenset(words) | QUESTION_WORDS | ANAPHORA | ENGLISH_WORDS


def is_english(words: Sequence[str]) -> bool:
    """Whether enough of these lowercased word tokens are common English words."""
    return sum(1 for w in words if w in ENGLISH_WORDS) >= max(1, 0.25 * len(words))


def question_language(question: str) -> str:
    """'en' for an English question, else 'id' (the articles' language)."""
    return "en" if is_english(tokenize(question)) else "id"


def question_type(question: str) -> str:
    """date, number, person, place or other: what kind of answer the question asks for."""
    # An acronym is not a question word: "kantor pusat WHO" asks for a place, not a person.
    words = [w for w in question.split() if not (len(w) > 1 and w.isupper())]
    text = " ".join(tokenize(" ".join(words)))
    for name, pattern in QUESTION_TYPES:
        if pattern.search(text):
            return name
    return "other"


@dataclass(frozen=True, eq=False)
class Query:
    """What every stage reads about one search text (a question, or one read in context)."""

    text: str
    vector: np.ndarray
    words: tuple[str, ...]  # lowercased word tokens
    stems: tuple[str, ...]  # keyword tokens, stemmed as the keyword index is
    content: frozenset[str]  # words that name the topic (no stop or question words)
    kind: str  # the answer type asked for
    english: bool

    @property
    def word_set(self) -> frozenset[str]:
        return frozenset(self.words)


def make_query(text: str, vector: np.ndarray, stemming: bool) -> Query:
    """Prepare a search text once for every stage."""
    words = tuple(tokenize(text))
    return Query(
        text=text,
        vector=vector,
        words=words,
        stems=tuple(tokenize(text, stemming)),
        content=frozenset(words) - stop_words(),
        kind=question_type(text),
        english=is_english(words),
    )
