"""Articles out of web pages: trafilatura's main text and metadata, as corpus paragraphs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import trafilatura
from lxml import etree
from trafilatura.utils import load_html

from ..corpus.articles import READ_ALSO
from .fetch import Skip, check_url

# An article has at least this many words of running text (paragraphs and quotes, not
# headings or lists): an index page of headlines has none.
MIN_ARTICLE_WORDS = 40
# Pagination furniture that may survive extraction: "Halaman 1 2 3", "Selanjutnya".
PAGINATION = re.compile(
    r"^(?:(?:halaman|hal\.?|page)\s*(?:\d+\s*)+(?:selanjutnya|berikutnya|next)?"
    r"|(?:halaman\s+)?(?:selanjutnya|berikutnya|sebelumnya)|next page|previous page)\W*$",
    re.IGNORECASE,
)
# Link texts that lead to an article's next part.
NEXT_TEXTS = frozenset(
    {
        "selanjutnya",
        "berikutnya",
        "halaman selanjutnya",
        "halaman berikutnya",
        "lanjut",
        "next",
        "next page",
        "›",
        "»",
    }
)
TRAILING_PAGE = re.compile(r"(?:/page)?[/\-_]\d{1,3}/?$|/$")
LANGUAGE = re.compile(r"^[a-z]{2,3}$")


@dataclass(frozen=True)
class Extracted:
    """One page's article: title, metadata, answerable paragraphs, and its next part."""

    title: str
    paragraphs: tuple[str, ...]
    url: str  # canonical where the page names one, else the address it was fetched from
    published: str | None = None
    author: str | None = None
    site: str | None = None
    language: str | None = None
    next_page: str | None = None


def _text(element: etree._Element) -> str:
    return " ".join("".join(element.itertext()).split())


def _captions(tree: etree._Element, base: str) -> dict[str, str]:
    """Figure captions by the address of their image."""
    found = {}
    for figure in tree.iter("figure"):
        caption = next(figure.iter("figcaption"), None)
        if caption is None:
            continue
        text = _text(caption)
        for image in figure.iter("img"):
            for attribute in ("src", "data-src"):
                if image.get(attribute) and text:
                    found[urljoin(base, image.get(attribute))] = text
    return found


def _page_path(url: str) -> str:
    return TRAILING_PAGE.sub("", urlsplit(url).path)


def continues(url: str, candidate: str) -> bool:
    """Whether candidate looks like a further part of the article at url (same path, another
    page number or query), not another article."""
    a, b = urlsplit(url), urlsplit(candidate)
    if a.netloc.lower() != b.netloc.lower() or (a.path, a.query) == (b.path, b.query):
        return False
    return a.path == b.path or _page_path(url) == _page_path(candidate)


def next_page(tree: etree._Element, url: str) -> str | None:
    """The address of the article's next part: rel="next", or a "Selanjutnya" link."""
    hrefs = tree.xpath('//link[@rel="next"]/@href | //a[@rel="next"]/@href')
    for anchor in tree.iter("a"):
        if anchor.get("href") and _text(anchor).casefold() in NEXT_TEXTS:
            hrefs.append(anchor.get("href"))
    for href in hrefs:
        try:
            candidate = check_url(urljoin(url, href))
        except Skip:
            continue
        if continues(url, candidate):
            return candidate
    return None


def _language(tree: etree._Element) -> str | None:
    code = (tree.get("lang") or "").split("-")[0].strip().lower()
    return code if LANGUAGE.match(code) else None


def extract(html: bytes, url: str, first: bool = True) -> Extracted:
    """The article on one page; Skip when there is none.

    first=False reads a further part of an article: it needs no title, and no minimum of text.
    """
    # A page the parsers choke on is one page skipped, not a run (or a feed) stopped.
    try:
        tree = load_html(html)
        document = None
        if tree is not None:
            document = trafilatura.bare_extraction(
                html,
                url=url,
                with_metadata=True,
                include_comments=False,
                include_tables=False,
                include_images=True,  # their captions are answer text (photo captions)
                deduplicate=False,
            )
    except Exception as exc:  # anything trafilatura or lxml may raise
        raise Skip("no_text", f"the page could not be read ({type(exc).__name__}: {exc})") from exc
    if tree is None:
        raise Skip("no_text", "the page could not be read as HTML")
    if document is None or document.body is None:
        raise Skip("no_text", "no article text found on the page")
    title = " ".join((document.title or "").split())
    captions = _captions(tree, url)
    paragraphs: list[str] = []
    seen: set[str] = set()  # a set: a page of 40,000 paragraphs is checked in linear time
    running = 0
    for element in document.body:
        if element.tag == "graphic":
            texts = [captions.get(element.get("src", ""), "")]
        elif element.tag == "list":
            texts = [_text(item) for item in element.iter("item")]
        elif element.tag in ("p", "quote", "head"):
            texts = [_text(element)]
        else:  # tables, code
            continue
        for text in texts:
            if (
                not text
                or text in seen
                or READ_ALSO.match(text)
                or PAGINATION.match(text)
                or (element.tag == "head" and text.casefold() == title.casefold())
            ):
                continue
            seen.add(text)
            paragraphs.append(text)
            if element.tag in ("p", "quote"):
                running += len(text.split())
    if not paragraphs:
        raise Skip("no_text", "no article text found on the page")
    if first and running < MIN_ARTICLE_WORDS:
        kind = document.pagetype
        said = f"; the page calls itself {kind!r}" if kind and kind != "article" else ""
        raise Skip("not_article", f"only {running} words of running text{said}")
    return Extracted(
        title=title or _first_words(paragraphs[0]),
        paragraphs=tuple(paragraphs),
        url=_canonical(document.url, url),
        published=document.date or None,
        author=" ".join(document.author.split()) if document.author else None,
        site=document.sitename or None,
        language=_language(tree),
        next_page=next_page(tree, url),
    )


def _canonical(named: str | None, url: str) -> str:
    """The page's canonical URL, unless it names a front page or another host; else url.

    Some sites name their front page as every article's canonical URL, which would make
    all their articles one.
    """
    try:
        canonical = check_url(named or "")
    except Skip:
        return url
    parts = urlsplit(canonical)
    front_page = parts.path == "/" and not parts.query
    return url if front_page or parts.netloc != urlsplit(url).netloc else canonical


def _first_words(text: str, most: int = 80) -> str:
    if len(text) <= most:
        return text
    cut = text.rfind(" ", 0, most)
    return text[: cut if cut > most // 2 else most] + "…"
