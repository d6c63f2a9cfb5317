"""Keyword tokens: Indonesian-aware, optionally stemmed (the index is in postings.py)."""

from __future__ import annotations

import functools
import re
import unicodedata

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
