"""Keyword side of search: Indonesian-aware tokens and a bm25s index over them."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

TOKEN = re.compile(r"\d+(?:[/.,:]\d+)*|\w+(?:-\w+)*")
REDUPLICATION = re.compile(r"^(\w+)-\1(nya|lah|kah)?$")


@functools.lru_cache(maxsize=1)
def _stemmer():
    from Sastrawi.Stemmer.StemmerFactory import StemmerFactory

    return StemmerFactory().create_stemmer()


@functools.lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _stemmer().stem(word) or word


def tokenize(text: str, stemming: bool = False) -> list[str]:
    """Lowercased word tokens; numbers like 22/9 kept whole; langkah-langkah -> langkah."""
    text = unicodedata.normalize("NFKC", text).casefold()
    tokens = []
    for match in TOKEN.finditer(text):
        word = match.group()
        redup = REDUPLICATION.match(word)
        if redup:
            word = redup.group(1)
        parts = [word] if word[0].isdigit() else word.split("-")
        if len(parts) > 1:
            tokens.append(word)
        for part in parts:
            tokens.append(_stem(part) if stemming and not part.isdigit() else part)
        if word[0].isdigit() and not word.isdigit():
            tokens.extend(re.findall(r"\d+", word))
    return tokens


class KeywordIndex:
    """BM25 over token lists; scores every chunk at once with numpy, no Python loop over chunks."""

    def __init__(self, model: bm25s.BM25, stemming: bool):
        self._model = model
        self.stemming = stemming
        self._vocab: dict[str, int] = model.vocab_dict

    @classmethod
    def build(cls, texts: Sequence[str], stemming: bool = False) -> KeywordIndex:
        """Index texts (one per chunk, in chunk order)."""
        model = bm25s.BM25()
        corpus = [tokenize(t, stemming) for t in texts]
        model.index(corpus, show_progress=False)
        return cls(model, stemming)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for this query (zeros when no word is known)."""
        return self.scores_of(tokenize(query, self.stemming))

    def scores_of(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every chunk for these keyword tokens (already stemmed as indexed)."""
        ids = [self._vocab[t] for t in tokens if t in self._vocab]
        n = int(self._model.scores["num_docs"])
        if not ids:
            return np.zeros(n, dtype=np.float32)
        return np.asarray(self._model.get_scores_from_ids(ids), dtype=np.float32)

    def known(self, tokens: Sequence[str]) -> int:
        """How many of these tokens occur in the indexed texts."""
        return sum(1 for t in tokens if t in self._vocab)

    def save(self, folder: Path) -> None:
        self._model.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, stemming: bool) -> KeywordIndex:
        model = bm25s.BM25.load(str(folder), show_progress=False, verbosity=0)
        return cls(model, stemming)
