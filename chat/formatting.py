"""Answer formatting both front ends share: a quote's marked runs and its source line."""

from __future__ import annotations

from chat.texts import DEFAULT_LANGUAGE, TEXTS, Texts
from retrieval.answering.answer import Quote


def source_line(quote: Quote, texts: Texts | None = None) -> str:
    """'— Title, paragraph N' (a photo caption is labelled as such), in texts' language."""
    texts = texts or TEXTS[DEFAULT_LANGUAGE]
    caption = f" ({texts.photo_caption})" if quote.kind == "caption" else ""
    return f"— {quote.title or quote.doc_id}, {texts.paragraph} {quote.paragraph}{caption}"


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
