"""Answer formatting both front ends share: a quote's marked runs and its source line."""

from __future__ import annotations

import datetime
import re

from chat.texts import DEFAULT_LANGUAGE, TEXTS, Texts
from retrieval.answering.answer import Quote

# A front matter date: 2023-09-22, or a timestamp that starts with one.
ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?![\d])")
# A date that is not one is shown as it is, cut to this length.
MAX_SHOWN_DATE = 40


def source_label(quote: Quote, texts: Texts | None = None) -> str:
    """'Title, paragraph N' (a photo caption is labelled as such), in texts' language."""
    texts = texts or TEXTS[DEFAULT_LANGUAGE]
    caption = f" ({texts.photo_caption})" if quote.kind == "caption" else ""
    return f"{quote.title or quote.doc_id}, {texts.paragraph} {quote.paragraph}{caption}"


def shown_date(published: str | None, texts: Texts | None = None) -> str:
    """A publication date as '22 Sep 2023' in texts' language; other text as it is."""
    texts = texts or TEXTS[DEFAULT_LANGUAGE]
    text = " ".join((published or "").split())
    found = ISO_DATE.match(text)
    if found:
        try:
            day = datetime.date(*(int(part) for part in found.groups()))
        except ValueError:
            day = None
        if day is not None:
            return f"{day.day} {texts.months[day.month - 1]} {day.year}"
    return text if len(text) <= MAX_SHOWN_DATE else text[: MAX_SHOWN_DATE - 1] + "…"


def source_detail(quote: Quote, texts: Texts | None = None) -> str:
    """'Outlet, 22 Sep 2023', or whichever of the two the article has ('' for neither)."""
    outlet = " ".join((quote.source or "").split())
    return ", ".join(part for part in (outlet, shown_date(quote.published, texts)) if part)


def source_line(quote: Quote, texts: Texts | None = None) -> str:
    """'— Title, paragraph N · Outlet, 22 Sep 2023', as much of it as the article has."""
    detail = source_detail(quote, texts)
    return f"— {source_label(quote, texts)}" + (f" · {detail}" if detail else "")


def marked_parts(quote: Quote, sure: bool = True) -> list[tuple[str, str]]:
    """The quote's text in runs: ("answer", the answer span), ("sentence", the rest of the
    highlighted sentence around it) and ("plain", everything else). Without an answer span,
    the highlighted sentence is the answer run in a `sure` reply (retrieval alone answered),
    else a sentence run: a passage or a decline marks nothing as the answer."""
    text, base = quote.text, quote.start
    a, b = quote.highlight_start - base, quote.highlight_end - base
    if quote.answer_start is None or quote.answer_end is None:
        cuts = [(0, a, "plain"), (a, b, "answer" if sure else "sentence"), (b, len(text), "plain")]
    else:
        s, e = quote.answer_start - base, quote.answer_end - base
        a, b = min(a, s), max(b, e)
        cuts = [
            (0, a, "plain"),
            (a, s, "sentence"),
            (s, e, "answer"),
            (e, b, "sentence"),
            (b, len(text), "plain"),
        ]
    return [(text[i:j], style) for i, j, style in cuts if j > i]
