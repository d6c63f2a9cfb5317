"""Long answers in Telegram: a cap on messages, quotes cut at sentences, no tiny parts."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.telegram.messages import MESSAGE_LIMIT, answer_messages, quote_html, shorten_quote, tg_len
from retrieval.answering.answer import Answer
from tests.fake_telegram import html_errors
from tests.test_bot_format import make_quote, visible

SENTENCE = "Harga cabai dan bawang naik lagi di pasar induk pekan ini. "


def test_a_declined_answer_with_a_long_passage_has_no_tiny_parts():
    # The decline line and the label are short blocks of their own; before, each became a
    # message (55 + 51 + 4096 + 2458 characters).
    quote = make_quote(SENTENCE * 110, (0, len(SENTENCE)))
    answer = Answer("What is the price of chillies?", "declined", (quote,))
    parts = answer_messages(answer, max_messages=10)
    assert len(parts) == 2
    assert all(tg_len(p) > MESSAGE_LIMIT // 2 for p in parts[:-1])
    assert parts[0].startswith("Sorry, the articles do not seem to cover this question.")


def test_a_shortened_quote_keeps_its_highlighted_sentence_and_marks_the_cuts():
    text = "".join(f"Kalimat nomor {i} tentang harga cabai di pasar. " for i in range(200))
    text = text.strip()
    target = text.index("Kalimat nomor 120 ")
    end = text.index(".", target) + 1
    quote = make_quote(text, (target, end))
    short = shorten_quote(quote, 500)
    assert len(short.text) <= 510
    assert short.text.startswith("… Kalimat nomor ") and short.text.endswith(". …")
    assert short.highlight == "Kalimat nomor 120 tentang harga cabai di pasar."
    assert "<b>Kalimat nomor 120 tentang harga cabai di pasar.</b>" in quote_html(short)
    assert shorten_quote(quote, len(text)) is quote


def test_a_shortened_quote_keeps_its_answer_span():
    text = "".join(f"Kalimat nomor {i} tentang harga cabai di pasar. " for i in range(200))
    text = text.strip()
    target = text.index("Kalimat nomor 150 ")
    end = text.index(".", target) + 1
    answer = text.index("150", target)
    quote = make_quote(text, (target, end), answer_start=100 + answer, answer_end=100 + answer + 3)
    short = shorten_quote(quote, 400)
    assert short.answer == "150"
    assert "<b>150</b>" in quote_html(short)
    # An answer outside the quote's text is dropped, not the text.
    astray = make_quote("kata " * 3000 + "akhir.", (0, 15006), answer_start=20, answer_end=25)
    assert shorten_quote(astray, 300).answer is None


@pytest.mark.parametrize("where", [0, 1400, 2990])
def test_one_huge_sentence_is_cut_around_its_answer(where):
    # Before, the cut kept the sentence's first 300 characters, losing an answer further on.
    words = ["kata"] * 3000
    words[where] = "Rp80.000"
    text = " ".join(words) + "."
    start = text.index("Rp80.000")
    quote = make_quote(text, (0, len(text)), answer_start=100 + start, answer_end=100 + start + 8)
    short = shorten_quote(quote, 300)
    assert short.answer == "Rp80.000"
    assert "<b>Rp80.000</b>" in quote_html(short)
    assert len(short.text) <= 304
    body = short.text.removeprefix("… ").removesuffix(" …")
    assert body in text and body.split(" ")[0] in ("kata", "Rp80.000")  # cut between words
    assert body.split(" ")[-1] in ("kata", "kata.", "Rp80.000")


def test_one_huge_sentence_is_cut_between_words():
    quote = make_quote("kata " * 3000 + "akhir.", (0, 15006))
    short = shorten_quote(quote, 300)
    assert short.text.endswith("kata …") and len(short.text) <= 302
    assert short.highlight_end - short.start <= len(short.text)


quotes = st.lists(
    st.tuples(st.integers(1, 400), st.integers(0, 399), st.sampled_from(["&", "<b>", "é", "😀"])),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(quotes, st.integers(1, 5), st.booleans())
def test_any_answer_fits_the_cap_and_keeps_every_source(specs, cap, declined):
    made = []
    for i, (sentences, mark, extra) in enumerate(specs):
        text = "".join(f"Kalimat {k} {extra} tentang pasar. " for k in range(sentences)).strip()
        a = min(mark, sentences - 1) * len(f"Kalimat 0 {extra} tentang pasar. ")
        made.append(make_quote(text, (min(a, len(text) - 1), len(text)), title=f"Sumber {i}"))
    answer = Answer(
        "q", "declined" if declined else "answer", tuple(made[:1] if declined else made)
    )
    parts = answer_messages(answer, max_messages=cap)
    assert 1 <= len(parts) <= cap
    for part in parts:
        assert tg_len(part) <= MESSAGE_LIMIT and html_errors(part) == []
    shown = "".join(visible(p) for p in parts)
    for quote in answer.quotes:
        assert re.search(rf"— {quote.title}, paragraf 2", shown)
