"""Chunking text that has no spaces or no sentence marks: every chunk fits, in linear time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.corpus.articles import parse_text
from retrieval.corpus.chunking import chunk_article, split_sentences


def subword_count(text: str) -> int:
    """A stand-in for a subword tokenizer: every 3 characters of a word are a token."""
    return sum(-(-len(word) // 3) for word in text.split())


class CountingCounter:
    """subword_count, remembering how many characters it was asked to count in all."""

    def __init__(self):
        self.chars = 0

    def __call__(self, text: str) -> int:
        self.chars += len(text)
        return subword_count(text)


def chunks_of(body: str, max_tokens: int = 50, count=subword_count):
    article = parse_text("Judul\n\n" + body, "x", "x.txt")
    return article, chunk_article(article, max_tokens, count)


def test_cjk_sentences_end_at_their_full_stops():
    text = "今天天气很好。我们去公园散步！你去吗？「好的。」他说"
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "今天天气很好。",
        "我们去公园散步！",
        "你去吗？",
        "「好的。」",
        "他说",
    ]


BODIES = {
    "cjk without marks": "中文没有空格也没有句号" * 2_000,
    "cjk sentences": "今天天气很好。我们去公园散步！你去吗？" * 1_000,
    "one long token": "x" * 20_000,
    "words without marks": "kata " * 4_000,
    "abbreviations": "A. " * 7_000,
    "dots": "." * 20_000,
    "long token among words": "awal " * 10 + "y" * 10_000 + " akhir" * 10,
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_every_chunk_fits_and_the_text_is_kept(name):
    article, chunks = chunks_of(BODIES[name])
    assert all(subword_count(c.text) <= 50 for c in chunks)
    paragraph = article.paragraph_text(article.paragraphs[0])
    assert "".join("".join(c.text.split()) for c in chunks) == "".join(paragraph.split())


@pytest.mark.parametrize("name", sorted(BODIES))
def test_chunking_counts_each_character_a_bounded_number_of_times(name):
    small, large = CountingCounter(), CountingCounter()
    chunks_of(BODIES[name], count=small)
    chunks_of(BODIES[name] * 8, count=large)
    # Linear: eight times the text costs about eight times the counting, not 64 times.
    assert large.chars <= 10 * small.chars
    assert large.chars <= 60 * len(BODIES[name] * 8)


TEXT = st.lists(
    st.sampled_from([*"abc xyz中文字。！？.!? \n", "Kata", "Zeus", "「", "」", "x" * 40]),
    max_size=300,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(TEXT, st.integers(16, 40))
def test_any_text_gives_chunks_within_the_limit(body, max_tokens):
    try:
        article = parse_text("Judul\n\n" + body, "x", "x.txt")
    except ValueError:
        return  # nothing but the title
    chunks = chunk_article(article, max_tokens, subword_count)
    for chunk in chunks:
        assert subword_count(chunk.text) <= max_tokens
        assert chunk.text == article.text[chunk.start : chunk.end] == chunk.text.strip()
    for para in article.paragraphs:
        inside = "".join(c.text for c in chunks if c.paragraph == para.number)
        assert "".join(inside.split()) == "".join(article.paragraph_text(para).split())
