"""Telegram replies as HTML: quotes in blockquotes, sources linked, split to fit one message."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from html import escape
from urllib.parse import urlparse

from chat.formatting import marked_parts, source_detail, source_label
from chat.texts import DEFAULT_LANGUAGE, TEXTS, Texts, for_question
from retrieval.answering.answer import Answer, Quote
from retrieval.corpus.chunking import split_sentences
from retrieval.index.folder import ArticleInfo

# Telegram's limit per message. Counted here over the HTML itself in UTF-16 units, as Telegram
# counts, which can only overestimate the visible text it measures.
MESSAGE_LIMIT = 4096
MAX_URL_CHARS = 1000
SOURCES_SHOWN = 50
MAX_MESSAGES = 3  # telegram.max_messages_per_answer's default
ELLIPSIS = "…"

_TOKEN = re.compile(r"<[^>]*>|&#?\w+;|[^<&]|[<&]", re.S)
_TAG = re.compile(r"<(/?)([a-zA-Z-]+)")
_SENTENCE_END = frozenset(".!?…\"'”’)")


def tg_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def safe_url(url: str | None) -> str | None:
    """The URL if Telegram can link it (http or https, sensible length), else None."""
    if not url or len(url) > MAX_URL_CHARS:
        return None
    parsed = urlparse(url.strip())
    return url.strip() if parsed.scheme in ("http", "https") and parsed.netloc else None


def link(text: str, url: str | None) -> str:
    """Escaped text, linked to url when it is a usable one."""
    url = safe_url(url)
    if url is None:
        return escape(text, quote=False)
    return f'<a href="{escape(url, quote=True)}">{escape(text, quote=False)}</a>'


def source_html(quote: Quote, texts: Texts | None = None) -> str:
    """'— Title, paragraph N · Outlet, date', the title part linked to the article when it
    has a URL."""
    detail = source_detail(quote, texts)
    tail = f" · {escape(detail, quote=False)}" if detail else ""
    return f"— {link(source_label(quote, texts), quote.url)}{tail}"


STYLE_TAGS = {"plain": ("", ""), "sentence": ("<i>", "</i>"), "answer": ("<b>", "</b>")}


def quote_html(quote: Quote, texts: Texts | None = None, sure: bool = True) -> str:
    """The quote in a blockquote, its answer in bold inside its highlighted sentence in
    italics, then its source; in a reply that is not `sure`, nothing is bold."""
    body = "".join(
        f"{STYLE_TAGS[style][0]}{escape(part, quote=False)}{STYLE_TAGS[style][1]}"
        for part, style in marked_parts(quote, sure)
    )
    return f"<blockquote>{body}</blockquote>\n{source_html(quote, texts)}"


def answer_html(answer: Answer, texts: Texts | None = None) -> str:
    """The whole answer as one HTML text, however long (by default in the language of its
    question)."""
    texts = texts or for_question("auto", answer.question)
    # A follow-up says how it was read, so a wrong reading shows.
    read_as = texts.read_as.format(question=answer.read_as) if answer.read_as else ""
    head = [f"<i>{escape(read_as, quote=False)}</i>"] if read_as else []
    if answer.kind == "declined":
        blocks = [*head, escape(texts.tg_decline, quote=False)]
        if answer.quotes:
            closest = quote_html(answer.quotes[0], texts, sure=False)
            blocks.append(f"{texts.tg_closest}\n{closest}")
        return "\n\n".join(blocks)
    if answer.kind == "passage":
        quotes = [quote_html(q, texts, sure=False) for q in answer.quotes]
        return "\n".join([*head, texts.tg_passage, *quotes])
    return "\n\n".join([*head, *(quote_html(q, texts) for q in answer.quotes)])


def answer_messages(
    answer: Answer,
    limit: int = MESSAGE_LIMIT,
    max_messages: int = MAX_MESSAGES,
    texts: Texts | None = None,
) -> list[str]:
    """The answer as at most max_messages HTML messages, each within Telegram's limit.

    When the quotes would need more, the longer ones are cut at sentence ends around their
    highlighted sentence, with "…" where text was left out (each keeps its source line).
    """
    texts = texts or for_question("auto", answer.question)
    parts = split_html(answer_html(answer, texts), limit)
    if len(parts) <= max_messages:
        return parts
    lengths = [len(q.text) for q in answer.quotes]
    empty = _shortened(answer, [0] * len(lengths))
    room = max_messages * limit - tg_len(answer_html(empty, texts))
    for _ in range(20):
        room = int(room * 0.85)  # escaping and cuts between parts cost more than the text
        budgets = share_out(lengths, max(room, 0))
        parts = split_html(answer_html(_shortened(answer, budgets), texts), limit)
        if len(parts) <= max_messages:
            return parts
    return parts[:max_messages]


def share_out(lengths: Sequence[int], total: int) -> list[int]:
    """Character budgets for texts of these lengths within total: short ones whole, the rest
    of the room in equal shares."""
    budgets = [0] * len(lengths)
    left = total
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for k, i in enumerate(order):
        budgets[i] = min(lengths[i], left // (len(order) - k))
        left -= budgets[i]
    return budgets


def _shortened(answer: Answer, budgets: Sequence[int]) -> Answer:
    quotes = tuple(shorten_quote(q, b) for q, b in zip(answer.quotes, budgets, strict=True))
    return dataclasses.replace(answer, quotes=quotes)


def shorten_quote(quote: Quote, budget: int) -> Quote:
    """The quote cut to about budget characters at sentence ends, around its answer (or its
    highlighted sentence), with "…" where text was left out; offsets stay valid for both."""
    text = quote.text
    if len(text) <= budget:
        return quote
    budget = max(budget, 80)  # a few words at least
    spans = split_sentences(text) or [(0, len(text))]
    marked = quote.answer_start if quote.answer_start is not None else quote.highlight_start
    mark = min(max(marked - quote.start, 0), len(text) - 1)
    first = last = next((k for k, (a, b) in enumerate(spans) if a <= mark < b), 0)
    while last + 1 < len(spans) and spans[last + 1][1] - spans[first][0] <= budget:
        last += 1
    while first > 0 and spans[last][1] - spans[first - 1][0] <= budget:
        first -= 1
    a, b = spans[first][0], spans[last][1]
    if b - a > budget:
        # The marked sentence alone is too long: cut it between words around the answer (a
        # highlighted sentence without one is kept from its start).
        marked_end = mark
        if quote.answer_start is not None and quote.answer_end is not None:
            marked_end = min(max(quote.answer_end - quote.start, mark), len(text))
        sentence_start, sentence_end = a, b
        a = max(a, min(mark - max(budget - (marked_end - mark), 0) // 2, b - budget))
        b = a + budget
        if a > sentence_start:
            space = text.find(" ", a, min(mark, a + budget // 2))
            if space != -1:
                a = space + 1
        if b < sentence_end:
            space = text.rfind(" ", max(marked_end, a + budget // 2 + 1), b)
            if space != -1:
                b = space
    prefix = ELLIPSIS + " " if a > 0 else ""
    suffix = " " + ELLIPSIS if b < len(text) else ""
    start = quote.start + a - len(prefix)  # so text offsets of the kept part are unchanged

    def clamp(offset: int) -> int:
        return min(max(offset, quote.start + a), quote.start + b)

    answer = (None, None)
    if quote.answer_start is not None and quote.answer_end is not None:
        answer = (clamp(quote.answer_start), clamp(quote.answer_end))
        if answer[0] >= answer[1]:
            answer = (None, None)
    return dataclasses.replace(
        quote,
        text=prefix + text[a:b] + suffix,
        start=start,
        end=start + len(prefix) + (b - a) + len(suffix),
        highlight_start=clamp(quote.highlight_start),
        highlight_end=clamp(quote.highlight_end),
        answer_start=answer[0],
        answer_end=answer[1],
    )


def sources_html(
    articles: Sequence[ArticleInfo], shown: int = SOURCES_SHOWN, texts: Texts | None = None
) -> str:
    """The indexed articles as an HTML list, linked where they have a URL."""
    texts = texts or TEXTS[DEFAULT_LANGUAGE]
    if not articles:
        return escape(texts.no_articles, quote=False)
    lines = [f"<b>{escape(texts.articles(len(articles)), quote=False)}:</b>"]
    lines += [f"• {link(a.title or a.doc_id, a.url)}" for a in articles[:shown]]
    if len(articles) > shown:
        lines.append(escape(texts.and_more.format(n=len(articles) - shown), quote=False))
    return "\n".join(lines)


def _closing(stack: Sequence[tuple[str, str]]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def _cut_level(tokens: list[str], j: int, depth: int) -> int:
    """How good a place to cut right after tokens[j] is: 0 (between blocks) .. 4 (anywhere)."""
    token = tokens[j]
    if token == "\n":
        return 0 if depth == 0 and j > 0 and tokens[j - 1] == "\n" else 1
    if token.isspace():
        k = j - 1
        while k >= 0 and tokens[k].startswith("<"):
            k -= 1  # a sentence may end just inside a closing </b>
        return 2 if k >= 0 and tokens[k] in _SENTENCE_END else 3
    return 4


def split_html(html: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split HTML into parts within limit, each valid on its own.

    Cuts go between blocks (a blank line outside any tag) where possible, else at a line
    break, a sentence end, a space, and only as a last resort between two characters. Tags
    open at a cut are closed at the end of one part and opened again at the start of the next.
    """
    if tg_len(html) <= limit:
        return [html] if html.strip() else []
    tokens = _TOKEN.findall(html)
    parts: list[str] = []
    stack: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        prefix = "".join(tag for _, tag in stack)
        length = tg_len(prefix)
        current = list(stack)
        best: dict[int, tuple[int, tuple[tuple[str, str], ...], int]] = {}
        has_text = False
        j = i
        while j < len(tokens):
            token = tokens[j]
            length += tg_len(token)
            tag = _TAG.match(token)
            if tag and tag.group(1):
                if current and current[-1][0] == tag.group(2).lower():
                    current.pop()
            elif tag:
                current.append((tag.group(2).lower(), token))
            elif not token.isspace():
                has_text = True
            if length + tg_len(_closing(current)) > limit:
                break
            if has_text:
                best[_cut_level(tokens, j, len(current))] = (j + 1, tuple(current), length)
            j += 1
        if j == len(tokens):
            parts.append(prefix + "".join(tokens[i:]))
            break
        if best:
            # The best kind of cut that still fills half a message: a blank line after a
            # two-line preamble must not become a message of its own.
            full = [level for level, (_, _, size) in best.items() if 2 * size >= limit]
            end, after, _ = best[min(full or best)]
        else:  # one token longer than a message: cannot happen with escaped text and short tags
            end, after = j + 1, tuple(current)
        body = (prefix + "".join(tokens[i:end])).rstrip()
        parts.append(body + _closing(after))
        stack = list(after)
        i = end
        while i < len(tokens) and tokens[i].isspace():
            i += 1
    return [p for p in parts if re.sub(r"<[^>]*>", "", p).strip()]
