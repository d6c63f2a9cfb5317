"""The bot's pure parts: HTML formatting and splitting, history and rate-limit bookkeeping."""

from __future__ import annotations

import re

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telegram.error import BadRequest, NetworkError, TimedOut

from chat.history import ChatHistories
from chat.telegram.handlers import RateLimit
from chat.telegram.messages import (
    answer_html,
    answer_messages,
    quote_html,
    safe_url,
    sources_html,
    split_html,
    tg_len,
)
from chat.telegram.transport import _safe_to_retry
from chat.texts import ENGLISH, INDONESIAN
from retrieval.answering.answer import Answer, Quote
from retrieval.answering.conversation import Turn
from retrieval.index.folder import ArticleInfo
from tests.fake_telegram import html_errors


def make_quote(text: str, highlight: tuple[int, int], **extra) -> Quote:
    values = dict(doc_id="doc", title="Judul <Berita> & Co", paragraph=2, score=0.9)
    values.update(extra)
    a, b = highlight
    return Quote(text, start=100, end=100 + len(text), highlight_start=100 + a,
                 highlight_end=100 + b, **values)  # fmt: skip


def visible(html: str) -> str:
    text = re.sub(r"<[^>]*>", "", html)
    return (
        text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
    )


def test_quote_is_escaped_bolded_and_sourced():
    quote = make_quote("Satu <dua> & tiga. Empat lima.", (0, 18), url="https://x.org/a?b=1&c=2")
    html = quote_html(quote, ENGLISH)
    assert html == (
        "<blockquote><b>Satu &lt;dua&gt; &amp; tiga.</b> Empat lima.</blockquote>\n"
        '— <a href="https://x.org/a?b=1&amp;c=2">Judul &lt;Berita&gt; &amp; Co, paragraph 2</a>'
    )
    assert html_errors(html) == []


def test_the_answer_span_is_bold_inside_its_italic_sentence():
    text = "Kim bertemu Sergei Shoigu di Vladivostok. Lalu pulang."
    quote = make_quote(text, (0, 41), answer_start=112, answer_end=125, answer_score=3.2)
    assert quote.answer == "Sergei Shoigu"
    html = quote_html(quote)
    assert html.startswith(
        "<blockquote><i>Kim bertemu </i><b>Sergei Shoigu</b><i> di Vladivostok.</i> Lalu pulang."
    )
    assert html_errors(html) == []
    assert visible(html).startswith(text)


def test_caption_and_unlinkable_urls():
    quote = make_quote("Foto.", (0, 5), kind="caption", url="javascript:alert(1)")
    assert quote_html(quote, ENGLISH).endswith(
        "— Judul &lt;Berita&gt; &amp; Co, paragraph 2 (photo caption)"
    )
    # Without texts, the default language: Indonesian.
    assert quote_html(quote).endswith(
        "— Judul &lt;Berita&gt; &amp; Co, paragraf 2 (keterangan foto)"
    )
    assert safe_url("javascript:alert(1)") is None
    assert safe_url("https://example.org/x") == "https://example.org/x"
    assert safe_url("https://" + "a" * 2000) is None


def test_declined_answer_labels_the_closest_passage():
    quote = make_quote("Tidak relevan.", (0, 14))
    english = "What is the weather like in Surabaya?"
    html = answer_html(Answer(english, "declined", (quote,)))
    assert html.startswith("Sorry, the articles do not seem to cover this question.\n\n")
    assert "(<i>not an answer</i>)" in html
    assert answer_html(Answer(english, "declined", ())) == (
        "Sorry, the articles do not seem to cover this question."
    )


def test_an_indonesian_question_is_declined_in_indonesian():
    quote = make_quote("Tidak relevan.", (0, 14))
    html = answer_html(Answer("Bagaimana cuaca di Surabaya?", "declined", (quote,)))
    assert html.startswith(INDONESIAN.tg_decline + "\n\n")
    assert "(<i>bukan jawaban</i>):\n<blockquote>" in html
    assert "paragraf 2" in html
    # The texts given win over the question's language (ui.language: en).
    assert answer_html(Answer("Bagaimana cuaca?", "declined", ()), ENGLISH) == ENGLISH.tg_decline


def test_sources_are_linked_and_capped():
    articles = [ArticleInfo(f"d{i}", f"Artikel {i}", "p", None) for i in range(60)]
    articles[0] = ArticleInfo("d0", "A & B", "p", "https://e.org/ab")
    html = sources_html(articles, shown=50, texts=ENGLISH)
    assert html.startswith("<b>60 articles indexed:</b>")
    assert '• <a href="https://e.org/ab">A &amp; B</a>' in html
    assert html.endswith("… and 10 more.")
    assert html_errors(html) == []
    indonesian = sources_html(articles, shown=50)
    assert indonesian.startswith("<b>60 artikel terindeks:</b>")
    assert indonesian.endswith("… dan 10 lainnya.")
    assert sources_html([], texts=ENGLISH) == "No articles are indexed yet."


def test_short_html_is_one_part():
    assert split_html("<b>hi</b>", 100) == ["<b>hi</b>"]


def test_split_prefers_block_boundaries():
    blocks = [f"<blockquote>{'kata ' * 15}x.</blockquote>\n— Sumber {i}" for i in range(3)]
    html = "\n\n".join(blocks)
    parts = split_html(html, 200)
    assert parts == blocks


def test_a_long_quote_splits_at_sentences_and_reopens_tags():
    sentence = "Harga cabai & bawang naik lagi. "
    quote = make_quote(sentence * 300, (0, len(sentence) * 150))
    parts = answer_messages(Answer("q", "answer", (quote,)))
    assert len(parts) >= 3
    for part in parts:
        assert tg_len(part) <= 4096
        assert html_errors(part) == []
        assert part.startswith("<blockquote>")
    assert parts[0].startswith("<blockquote><b>Harga")
    assert parts[1].startswith("<blockquote><b>Harga")  # the bold sentence run continues
    assert all(re.sub(r"(</\w+>)+$", "", p).endswith(".") for p in parts[:-1])
    assert "".join(visible(p) for p in parts).replace(" ", "") == visible(
        quote_html(quote)
    ).replace(" ", "")


def test_text_without_spaces_is_still_split_safely():
    quote = make_quote("&" * 9000, (10, 20), title="T")
    parts = answer_messages(Answer("q", "answer", (quote,)), max_messages=100)
    for part in parts:
        assert tg_len(part) <= 4096
        assert html_errors(part) == []
    assert sum(visible(p).count("&") for p in parts) == 9000


def test_astral_characters_count_double():
    text = "😀" * 3000  # 6,000 UTF-16 units
    parts = split_html(f"<b>{text}</b>", 4096)
    assert len(parts) == 2
    assert all(tg_len(p) <= 4096 for p in parts)


segments = st.lists(
    st.tuples(
        st.text(alphabet=st.sampled_from(list("ab cd.&<>\n😀é")), max_size=300),
        st.sampled_from(["", "b", "i", "blockquote"]),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(segments, st.integers(min_value=40, max_value=400))
def test_every_part_is_valid_html_within_the_limit(parts, limit):
    from html import escape

    html = "\n\n".join(
        f"<{tag}>{escape(text, False)}</{tag}>" if tag else escape(text, False)
        for text, tag in parts
        if text.strip()
    )
    split = split_html(html, limit)
    for part in split:
        assert tg_len(part) <= limit
        assert html_errors(part) == []
        assert visible(part).strip()
    # No visible character is lost (whitespace at cuts may go).
    squeeze = lambda s: re.sub(r"\s+", "", s)  # noqa: E731
    assert squeeze("".join(visible(p) for p in split)) == squeeze(visible(html))


def test_chat_history_is_bounded():
    histories = ChatHistories(size=2, max_chats=2)

    def turn(question: str) -> Turn:
        return Turn(question, question, "answer")

    def asked(chat: int) -> list[str]:
        return [t.question for t in histories.earlier(chat)]

    assert asked(1) == []
    for question in "abcd":
        histories.record(1, turn(question))
    assert asked(1) == ["c", "d"]
    histories.record(2, turn("x"))
    histories.record(3, turn("y"))  # chat 1 is the least recent: forgotten
    assert asked(1) == [] and asked(3) == ["y"]
    none = ChatHistories(size=0)
    none.record(1, turn("a"))
    assert none.earlier(1) == ()


def test_rate_limit_window_slides():
    limit = RateLimit(per_minute=2)
    assert limit.allow(1, 0.0) and limit.allow(1, 10.0)
    assert not limit.allow(1, 20.0)
    assert limit.first_refusal(1) and not limit.first_refusal(1)
    assert limit.allow(2, 20.0)  # per user
    assert limit.allow(1, 60.0)  # the first question left the window
    assert limit.first_refusal(1)  # a new stretch of refusals warns again
    assert all(RateLimit(per_minute=0).allow(1, 0.0) for _ in range(100))


def _error(exc_type, cause=None):
    exc = exc_type("boom")
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "endpoint", "retry"),
    [
        (_error(NetworkError), "sendMessage", True),  # a 5xx answer: nothing was sent
        (_error(NetworkError, httpx.ConnectError("x")), "sendMessage", True),
        (_error(TimedOut, httpx.ConnectTimeout("x")), "sendMessage", True),
        (_error(TimedOut, httpx.PoolTimeout("x")), "sendMessage", True),
        (_error(TimedOut, httpx.ReadTimeout("x")), "sendMessage", False),
        (_error(NetworkError, httpx.ReadError("x")), "sendMessage", False),
        (_error(TimedOut, httpx.ReadTimeout("x")), "sendChatAction", True),
        (_error(BadRequest), "sendMessage", False),
    ],
)
def test_network_retries_never_send_twice(exc, endpoint, retry):
    assert _safe_to_retry(exc, endpoint) is retry


@pytest.mark.parametrize(
    "source, published, texts, line",
    [
        (
            "VOA Indonesia",
            "2023-09-22",
            INDONESIAN,
            "— Judul, paragraf 2 · VOA Indonesia, 22 Sep 2023",
        ),
        (
            "VOA Indonesia",
            "2023-08-05",
            INDONESIAN,
            "— Judul, paragraf 2 · VOA Indonesia, 5 Agu 2023",
        ),
        (
            "VOA Indonesia",
            "2023-08-05",
            ENGLISH,
            "— Judul, paragraph 2 · VOA Indonesia, 5 Aug 2023",
        ),
        ("VOA", "2023-10-01T08:30:00+07:00", INDONESIAN, "— Judul, paragraf 2 · VOA, 1 Okt 2023"),
        (None, "2024-12-24", ENGLISH, "— Judul, paragraph 2 · 24 Dec 2024"),
        ("  Kompas\n ", None, INDONESIAN, "— Judul, paragraf 2 · Kompas"),
        (None, "Senin pagi", INDONESIAN, "— Judul, paragraf 2 · Senin pagi"),
        (None, "2023-02-30", INDONESIAN, "— Judul, paragraf 2 · 2023-02-30"),
        (None, None, INDONESIAN, "— Judul, paragraf 2"),
        ("", "", ENGLISH, "— Judul, paragraph 2"),
    ],
)
def test_source_line_names_the_outlet_and_date_in_the_reply_language(
    source, published, texts, line
):
    from chat.console import format_quote
    from chat.formatting import source_line

    quote = make_quote("Satu dua.", (0, 9), title="Judul", source=source, published=published)
    assert source_line(quote, texts) == line
    # The console and Telegram say the same; Telegram links only the title part.
    assert format_quote(quote, color=False, texts=texts).endswith(line)
    linked = make_quote("Satu.", (0, 5), title="J", url="https://x.org/a", source="VOA",
                        published="2023-09-22")  # fmt: skip
    assert quote_html(linked, INDONESIAN).endswith(
        '— <a href="https://x.org/a">J, paragraf 2</a> · VOA, 22 Sep 2023'
    )


def test_a_very_long_odd_date_is_cut():
    from chat.formatting import MAX_SHOWN_DATE, source_line

    quote = make_quote("Satu.", (0, 5), title="J", published="x" * 500, source="<b>&")
    line = source_line(quote, ENGLISH)
    assert line.endswith("x…") and len(line.split(", ")[-1]) == MAX_SHOWN_DATE
    html = quote_html(quote, ENGLISH)
    assert "· &lt;b&gt;&amp;, x" in html and html_errors(html) == []
