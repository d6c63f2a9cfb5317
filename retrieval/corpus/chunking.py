"""Sentence-aware chunks inside paragraphs, each with its exact span in the article."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .articles import Article

TokenCounter = Callable[[str], int]

# Words ending in a period that do not end a sentence (Indonesian and English).
ABBREVIATIONS = frozenset(
    """
    dr drs dra ir prof h hj no nomor jl jln tn ny nn sdr st kh kol jend brigjen mayjen letjen
    kapt ltd inc co corp mr mrs ms jr sr vs etc dll dsb dst tsb yth rp hlm kab kec kel
    pt cv tbk u.s e.g i.e a.n s.d
    """.split()
)
# A match starts only at the first mark of a run (the lookbehinds), so a long run of marks is
# tried once, not once per mark. Chinese and Japanese full stops end a sentence without a space.
SENTENCE_END = re.compile(
    r"(?<![.!?…])[.!?…]+[\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9À-Ý])"
    r"|(?<![。！？])[。！？]+[」』）\"'”’)\]]*"
)
LAST_WORD = re.compile(r"\S+$")
# Longest word looked at for an abbreviation ("Dr.", "u.s.").
ABBREVIATION_CHARS = 16
# No token is this long, so a piece of max_tokens tokens has fewer characters than
# max_tokens times this: the bound keeps every count call short, whatever the counter.
MAX_CHARS_PER_TOKEN = 64


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
        if match.group().startswith("."):
            # Only the last few characters: a run of skipped abbreviations must not make
            # this look at a growing stretch of text each time.
            window = text[max(pos, match.start() - ABBREVIATION_CHARS - 4) : match.start()]
            found = LAST_WORD.search(window)
            last_word = found.group().lower().strip("(\"'“") if found else ""
            if last_word in ABBREVIATIONS or len(last_word) == 1:
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


def _fits(text: str, start: int, end: int, max_tokens: int, count: TokenCounter) -> bool:
    return end - start <= max_tokens * MAX_CHARS_PER_TOKEN and count(text[start:end]) <= max_tokens


def _longest_fit(text: str, start: int, end: int, max_tokens: int, count: TokenCounter) -> int:
    """The largest cut in (start, end] such that text[start:cut] fits (at least one character).

    Doubling from max_tokens characters, then halving the gap: the counter only ever sees
    about twice the piece it finds, so cutting a long text costs O(n log piece), not O(n²).
    """
    good, bad = start, None
    length = max(1, max_tokens)
    while True:
        cut = min(end, start + length)
        if _fits(text, start, cut, max_tokens, count):
            good = cut
            if cut == end:
                return end
            length *= 2
        else:
            bad = cut
            break
    while bad - good > 1:
        middle = (good + bad) // 2
        if _fits(text, start, middle, max_tokens, count):
            good = middle
        else:
            bad = middle
    return max(good, start + 1)


def _split_long(text: str, span: tuple[int, int], max_tokens: int, count: TokenCounter):
    """Cut one over-long sentence into pieces that fit: between words where it has spaces,
    else (CJK, long tokens) anywhere, at the token limit."""
    pieces, start, end = [], span[0], span[1]
    while start < end:
        cut = _longest_fit(text, start, end, max_tokens, count)
        if cut < end and not text[cut].isspace() and not text[cut - 1].isspace():
            space = max(text.rfind(" ", start, cut), text.rfind("\n", start, cut))
            if space > start:  # cut between words rather than inside one
                cut = space
        piece = text[start:cut]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            pieces.append((start + lead, start + lead + len(stripped)))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    return pieces


def chunk_article(article: Article, max_tokens: int, count: TokenCounter) -> list[Chunk]:
    """Pack whole sentences of each paragraph into chunks of at most max_tokens tokens."""
    text, chunks = article.text, []
    for paragraph in article.paragraphs:
        sentences: list[tuple[int, int]] = []
        for span in split_sentences(text, paragraph.start, paragraph.end):
            if not _fits(text, span[0], span[1], max_tokens, count):
                sentences.extend(_split_long(text, span, max_tokens, count))
            else:
                sentences.append(span)
        group: list[tuple[int, int]] = []
        for span in sentences:
            if group and not _fits(text, group[0][0], span[1], max_tokens, count):
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
