"""Sentence-aware chunks inside paragraphs, each with its exact span in the article."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .corpus import Article

TokenCounter = Callable[[str], int]

# Words ending in a period that do not end a sentence (Indonesian and English).
ABBREVIATIONS = frozenset(
    """
    dr drs dra ir prof h hj no nomor jl jln tn ny nn sdr st kh kol jend brigjen mayjen letjen
    kapt ltd inc co corp mr mrs ms jr sr vs etc dll dsb dst tsb yth rp hlm kab kec kel
    pt cv tbk u.s e.g i.e a.n s.d
    """.split()
)
SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9À-Ý])")
WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    """A passage to embed and quote: [start, end) in its article, and its sentence spans."""

    doc_id: str
    paragraph: int
    start: int
    end: int
    text: str
    sentences: tuple[tuple[int, int], ...]
    kind: str = "body"

    @property
    def chunk_id(self) -> str:
        return f"{self.doc_id}#{self.start}-{self.end}"


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans of text[start:end], trimmed of surrounding whitespace."""
    end = len(text) if end is None else end
    cuts, pos = [], start
    for match in SENTENCE_END.finditer(text, start, end):
        before = text[pos : match.start()].split()
        last_word = before[-1].lower().strip("(\"'“") if before else ""
        if match.group().startswith(".") and (last_word in ABBREVIATIONS or len(last_word) == 1):
            continue
        cuts.append(match.end())
        pos = match.end()
    spans = []
    for a, b in zip([start, *cuts], [*cuts, end], strict=True):
        piece = text[a:b]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            spans.append((a + lead, a + lead + len(stripped)))
    return spans


def _split_long(text: str, span: tuple[int, int], max_tokens: int, count: TokenCounter):
    """Cut one over-long sentence at word boundaries into pieces that fit."""
    words = [(m.start(), m.end()) for m in WORD.finditer(text, *span)]
    pieces, first = [], 0
    while first < len(words):
        last = first
        while (
            last + 1 < len(words)
            and count(text[words[first][0] : words[last + 1][1]]) <= max_tokens
        ):
            last += 1
        pieces.append((words[first][0], words[last][1]))
        first = last + 1
    return pieces


def chunk_article(article: Article, max_tokens: int, count: TokenCounter) -> list[Chunk]:
    """Pack whole sentences of each paragraph into chunks of at most max_tokens tokens."""
    text, chunks = article.text, []
    for paragraph in article.paragraphs:
        sentences: list[tuple[int, int]] = []
        for span in split_sentences(text, paragraph.start, paragraph.end):
            if count(text[span[0] : span[1]]) > max_tokens:
                sentences.extend(_split_long(text, span, max_tokens, count))
            else:
                sentences.append(span)
        group: list[tuple[int, int]] = []
        for span in sentences:
            if group and count(text[group[0][0] : span[1]]) > max_tokens:
                chunks.append(_make_chunk(article, paragraph.number, paragraph.kind, group))
                group = []
            group.append(span)
        if group:
            chunks.append(_make_chunk(article, paragraph.number, paragraph.kind, group))
    return chunks


def _make_chunk(article: Article, number: int, kind: str, group: list[tuple[int, int]]) -> Chunk:
    start, end = group[0][0], group[-1][1]
    return Chunk(article.doc_id, number, start, end, article.text[start:end], tuple(group), kind)


def chunk_corpus(articles: Iterable[Article], max_tokens: int, count: TokenCounter) -> list[Chunk]:
    """All chunks of all articles, in corpus order."""
    return [chunk for article in articles for chunk in chunk_article(article, max_tokens, count)]
