"""Articles from the web into the corpus: pages and feeds in, one .md file per article out.

The corpus folder stays the single source of truth. Each article is written, whole or not
at all, to `<corpus>/<sources.folder>/<site>/<slug>.md` with its metadata as front matter;
the incremental reindex does the rest. An article is known by its URLs (canonical, asked
for, redirected to) and by the hash of its text, both read back from those files, so the
same story fetched twice or through two addresses is stored once, and a changed one
replaces its file; another address that leads to a known article is added to its `links:`.
Feeds (those in sources.feeds and those followed with --feed, see feeds.py) remember the
entries they have read in a hidden file beside the articles; a run that stops half-way
leaves every article it finished, and the next one goes on from there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import yaml

from ..config import Config, load_config
from ..corpus.articles import MAX_FRONT_MATTER_CHARS, terminal_safe
from ..errors import ReindexLockedError, TanyaError
from ..index.reindex import ReindexResult, print_result, progress_factory, reindex, reindex_lock
from ..models.embedding import Embedder
from ..safe_yaml import load_yaml
from .extract import Extracted, extract
from .feeds import feed_urls, follow, followed_feeds, looks_like_feed, unfollow
from .fetch import FEED_TYPES, Fetcher, Page, Skip, check_url
from .files import TEMP_SUFFIX, write_atomically

log = logging.getLogger("tanya.ingest")

# An article in several parts is read up to this many pages.
MAX_PARTS = 10
# An article keeps at most this many paragraphs (and sources.max_article_chars characters):
# a page of 40,000 paragraphs is not 40,000 passages to embed.
MAX_PARAGRAPHS = 1000
# A site's folder name is cut to this length (a host name may have 253 characters).
MAX_SITE_CHARS = 100
STATE_FILE = ".feeds.json"
# links: in the front matter keeps at most this many addresses of an article, and this many
# characters of them (a feed of 30,000 tracking variants of one story must not grow its
# front matter past what is read back).
MAX_LINKS = 50
MAX_LINKS_CHARS = 16_000
SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Outcome:
    """What became of one address: added, updated, unchanged or skipped (with the reason)."""

    url: str
    status: str
    title: str = ""
    path: str = ""
    reason: str = ""
    kind: str = ""  # skipped: the kind of reason (fetch.Skip.kind)
    transient: bool = False  # skipped for now: a later run tries again
    note: str = ""  # added or updated: what was left out of a page too long to keep whole


@dataclass(frozen=True)
class IngestReport:
    """A run's outcomes, the feeds that could not be read, and the reindex it ended with."""

    outcomes: tuple[Outcome, ...]
    feed_problems: tuple[Outcome, ...] = ()
    reindex: ReindexResult | None = None
    followed: tuple[str, ...] = ()  # feeds this run began to follow
    feeds_found: tuple[str, ...] = ()  # addresses given as pages that were feeds, read once

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def summary(self) -> str:
        """'2 added, 0 updated, 1 unchanged, 1 skipped'."""
        counts = (f"{self.count(s)} {s}" for s in ("added", "updated", "unchanged", "skipped"))
        return ", ".join(counts)


class Progress(Protocol):
    """Told how many addresses there are to read (in steps) and when each is done."""

    def add_total(self, n: int) -> None: ...

    def step(self, outcome: Outcome) -> None: ...


class _NoProgress:
    def add_total(self, n: int) -> None:
        pass

    def step(self, outcome: Outcome) -> None:
        pass


@dataclass
class _Known:
    path: Path
    links: list[str]
    text_hash: str


def text_hash(paragraphs: Sequence[str]) -> str:
    """The hash an article's text is known by: its paragraphs, spacing and case aside."""
    text = "\n".join(" ".join(p.split()).casefold() for p in paragraphs)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_front_matter(text: str) -> dict:
    """The YAML front matter of a file tanya-add wrote (empty when there is none)."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---\n", 3)
    if end == -1 or end > MAX_FRONT_MATTER_CHARS:
        return {}
    try:
        meta = load_yaml(text[4 : end + 1], MAX_FRONT_MATTER_CHARS)
    except yaml.YAMLError:  # YamlRefused included
        return {}
    return meta if isinstance(meta, dict) else {}


def render(article: Extracted, links: Sequence[str], digest: str, fetched: str) -> str:
    """The article as a corpus .md file: front matter, '# Title', paragraphs."""
    meta = {
        "url": article.url,
        "source": article.site,
        "published": article.published,
        "author": article.author,
        "language": article.language,
        "fetched": fetched,
        "links": list(links),
        "text_sha256": digest,
    }
    front = yaml.safe_dump(
        {k: v for k, v in meta.items() if v is not None},
        allow_unicode=True,
        sort_keys=False,
        width=10_000,
    )
    body = "\n\n".join(article.paragraphs)
    return f"---\n{front}---\n# {article.title}\n\n{body}\n"


def article_path(folder: Path, url: str) -> Path:
    """Where the article with this canonical URL is stored: <site>/<slug>-<hash>.md."""
    parts = urlsplit(url)
    site = SLUG.sub("-", (parts.hostname or "site").removeprefix("www.").lower()).strip("-")
    site = site[:MAX_SITE_CHARS].strip("-")
    if parts.port:
        site += f"-{parts.port}"
    segments = [s for s in parts.path.split("/") if s]
    last = re.sub(r"\.(s?html?|php|aspx?)$", "", segments[-1].lower()) if segments else ""
    slug = SLUG.sub("-", last).strip("-")[:60].strip("-") or "article"
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:8]
    return folder / (site or "site") / f"{slug}-{digest}.md"


class Store:
    """The articles tanya-add wrote, known by their URLs and by the hash of their text."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.by_url: dict[str, _Known] = {}
        self.by_hash: dict[str, _Known] = {}
        for path in sorted(folder.rglob("*.md")) if folder.is_dir() else []:
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue
            try:
                meta = read_front_matter(path.read_text("utf-8")[: MAX_FRONT_MATTER_CHARS + 8])
            except (OSError, UnicodeDecodeError):
                continue
            if not isinstance(meta.get("text_sha256"), str):
                continue  # not written by tanya-add
            links = [str(u) for u in meta.get("links") or [] if isinstance(u, str)]
            links = _unique([str(meta.get("url", "")), *links])
            self._remember(_Known(path, links, meta["text_sha256"]))

    def _remember(self, known: _Known) -> None:
        for url in known.links:
            self.by_url[url] = known
        self.by_hash[known.text_hash] = known

    def _record_links(self, known: _Known, links: Sequence[str]) -> None:
        """Add the addresses that led to a known article to its front matter's links (its
        text and everything else in the file as they were)."""
        wanted = _kept_links([*known.links, *links])
        if wanted == known.links:
            return
        try:
            text = known.path.read_text("utf-8")
            meta = read_front_matter(text)
            if not meta:
                return  # no front matter to add to (changed by hand since)
            meta["links"] = wanted
            front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=10_000)
            write_atomically(known.path, f"---\n{front}---\n" + text[text.find("\n---\n", 3) + 5 :])
        except (OSError, UnicodeDecodeError) as exc:
            # The article is there; only the other address is not noted (tried next time).
            log.warning("could not note another address of %s: %s", known.path, exc)
            return
        known.links = wanted
        for url in wanted:
            self.by_url[url] = known

    def remove_temporary_files(self) -> None:
        """Temporary files a crashed run left behind."""
        for path in self.folder.rglob(f".*{TEMP_SUFFIX}") if self.folder.is_dir() else []:
            path.unlink(missing_ok=True)

    def store(self, article: Extracted, urls: Sequence[str]) -> Outcome:
        """Add, replace or leave the article, whichever its URLs and text call for."""
        links = _unique([article.url, *urls])
        digest = text_hash(article.paragraphs)
        asked = urls[0]
        known = next((self.by_url[u] for u in links if u in self.by_url), None)
        if known is None and digest in self.by_hash:
            same = self.by_hash[digest]  # the same story through another address
            self._record_links(same, links)
            return Outcome(asked, "unchanged", article.title, str(same.path))
        if known is not None and known.text_hash == digest:
            self._record_links(known, links)
            return Outcome(asked, "unchanged", article.title, str(known.path))
        path = known.path if known is not None else article_path(self.folder, article.url)
        links = _kept_links([*links, *(known.links if known is not None else [])])
        fetched = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        write_atomically(path, render(article, links, digest, fetched))
        if known is not None and self.by_hash.get(known.text_hash) is known:
            del self.by_hash[known.text_hash]  # its old text is in the corpus no more
        self._remember(_Known(path, links, digest))
        return Outcome(asked, "updated" if known else "added", article.title, str(path))


def _unique(items: Iterable[str]) -> list[str]:
    return [u for u in dict.fromkeys(items) if u]


def _kept_links(urls: Iterable[str]) -> list[str]:
    """The addresses (each once, in order) within MAX_LINKS and MAX_LINKS_CHARS."""
    kept, chars = [], 0
    for url in _unique(urls):
        if len(kept) == MAX_LINKS or chars + len(url) > MAX_LINKS_CHARS:
            break
        kept.append(url)
        chars += len(url)
    return kept


def fetch_article(fetcher: Fetcher, url: str, max_chars: int) -> tuple[Extracted, list[str], str]:
    """The article at url, all its parts joined (within MAX_PARAGRAPHS and max_chars), the
    addresses that led to it, and what was cut from it ("" when nothing was)."""
    page = fetcher.get(url)
    if looks_like_feed(page.body, page.content_type):
        raise FeedFound(page)
    if page.content_type in FEED_TYPES:  # XML, but no feed
        raise Skip("not_html", f"not an HTML page ({page.content_type})")
    article = extract(page.body, page.final_url)
    urls = _unique([page.url, page.final_url])
    paragraphs = list(article.paragraphs)
    known = set(paragraphs)
    seen = {page.final_url}
    following = article.next_page
    while following and following not in seen and len(seen) < MAX_PARTS:
        seen.add(following)
        try:
            part_page = fetcher.get(following)
            part = extract(part_page.body, part_page.final_url, first=False)
        except Skip as skip:
            raise Skip(
                skip.kind, f"part {len(seen)} ({following}): {skip.detail}", skip.transient
            ) from skip
        fresh = [p for p in dict.fromkeys(part.paragraphs) if p not in known]
        known.update(fresh)
        paragraphs += fresh
        seen.add(part_page.final_url)
        following = part.next_page
    paragraphs, cut = _capped(paragraphs, max_chars)
    return replace(article, paragraphs=tuple(paragraphs), next_page=None), urls, cut


def _capped(paragraphs: list[str], max_chars: int) -> tuple[list[str], str]:
    """The first whole paragraphs within MAX_PARAGRAPHS and max_chars characters (a first
    paragraph longer than that is cut between words), and what was left out ("": nothing)."""
    kept, total = [], 0
    for paragraph in paragraphs[:MAX_PARAGRAPHS]:
        if total + len(paragraph) > max_chars:
            if not kept:
                cut = paragraph.rfind(" ", 0, max_chars)
                kept.append(paragraph[: cut if cut > 0 else max_chars].rstrip())
                total = len(kept[0])
            break
        kept.append(paragraph)
        total += len(paragraph)
    whole = sum(map(len, paragraphs))
    if total == whole:
        return kept, ""
    return kept, (
        f"too long: its first {len(kept):,} of {len(paragraphs):,} paragraphs were kept, "
        f"{total:,} of {whole:,} characters (at most {MAX_PARAGRAPHS:,} paragraphs and "
        "sources.max_article_chars characters)"
    )


def _add_one(
    fetcher: Fetcher, store: Store, url: str, max_chars: int, feed_pages: bool = False
) -> Outcome:
    """The article at url into the store; with feed_pages, FeedFound when url is a feed."""
    try:
        article, urls, cut = fetch_article(fetcher, url, max_chars)
        return replace(store.store(article, urls), url=url, note=cut)
    except Skip as skip:
        if feed_pages and isinstance(skip, FeedFound):
            raise
        return Outcome(url, "skipped", reason=skip.detail, kind=skip.kind, transient=skip.transient)
    except OSError as exc:  # a full disk, a permission: this article is not stored, the rest go on
        reason = f"could not be written ({exc.strerror or exc})"
        return Outcome(url, "skipped", reason=reason, kind="write", transient=True)


# Feeds


@dataclass
class FeedState:
    """Feed entries already read: per feed, each entry's key and the 'updated' it had."""

    path: Path
    feeds: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> FeedState:
        try:
            data = json.loads(path.read_text("utf-8"))
            feeds = {
                str(feed): {str(k): str(v) for k, v in entries.items()}
                for feed, entries in data.get("feeds", {}).items()
                if isinstance(entries, dict)
            }
        except (OSError, ValueError, AttributeError):
            feeds = {}  # none yet, or unreadable: stored articles are still known by URL
        return cls(path, feeds)

    def save(self) -> None:
        write_atomically(self.path, json.dumps({"version": 1, "feeds": self.feeds}, indent=1))


@dataclass(frozen=True)
class Entry:
    key: str
    link: str
    updated: str


@dataclass(frozen=True)
class Feed:
    """A feed's title and entries, in its order."""

    title: str
    entries: list[Entry]


class FeedFound(Skip):
    """A page asked for that is an RSS or Atom feed (the page is kept: it is read as one)."""

    def __init__(self, page: Page):
        super().__init__("feed", "an RSS or Atom feed, not an article page")
        self.page = page


def parse_feed(body: bytes) -> Feed:
    """The title and entries of an RSS or Atom feed's bytes; Skip when it is none."""
    import feedparser

    parsed = feedparser.parse(body)  # bytes: feedparser fetches nothing itself
    if not parsed.entries and (parsed.bozo or not parsed.version):
        problem = parsed.get("bozo_exception") or "no entries"
        raise Skip("not_feed", f"not an RSS or Atom feed ({problem})")
    entries = []
    for item in parsed.entries:
        link = item.get("link") or ""
        if not link:
            continue
        key = str(item.get("id") or link)
        # dict.get: feedparser's own get("updated") warns and falls back to "published".
        updated = str(dict.get(item, "updated") or dict.get(item, "published") or "")
        entries.append(Entry(key, link, updated))
    title = parsed.feed.get("title") if isinstance(parsed.feed, dict) else ""
    return Feed(" ".join(str(title or "").split()), entries)


def read_feed(fetcher: Fetcher, url: str) -> list[Entry]:
    """The entries of an RSS or Atom feed, in its order."""
    return parse_feed(fetcher.get(url, html=False).body).entries


def _new_entries(entries: Sequence[Entry], seen: dict[str, str], most: int) -> list[Entry]:
    """The entries not read before (each once), at most `most` of them."""
    todo, links, keys = [], set(), set()  # sets: a feed of 30,000 entries is linear work
    for entry in entries:
        if len(todo) == most:
            break
        if seen.get(entry.key) == entry.updated:
            continue
        if entry.link in links or entry.key in keys:
            continue  # the same entry twice in one feed
        links.add(entry.link)
        keys.add(entry.key)
        todo.append(entry)
    return todo


def _read_feeds(
    config: Config,
    fetcher: Fetcher,
    store: Store,
    progress: Progress,
    feeds: Sequence[str],
    read: dict[str, Feed] | None = None,
) -> tuple[list[Outcome], list[Outcome]]:
    """The new entries of `feeds` into the store (those in `read` are not fetched again),
    each feed's entries remembered in the state file."""
    state = FeedState.load(store.folder / STATE_FILE)
    current_feeds = set(feed_urls(config))
    state.feeds = {f: e for f, e in state.feeds.items() if f in current_feeds}
    outcomes, problems = [], []
    for feed in feeds:
        try:
            entries = read[feed].entries if read and feed in read else read_feed(fetcher, feed)
        except Skip as skip:
            problems.append(Outcome(feed, "skipped", reason=skip.detail, kind=skip.kind))
            continue
        seen = state.feeds.setdefault(feed, {})
        todo = _new_entries(entries, seen, config.sources.max_per_feed)
        progress.add_total(len(todo))
        for entry in todo:
            outcome = _add_one(fetcher, store, entry.link, config.sources.max_article_chars)
            if not outcome.transient:
                seen[entry.key] = entry.updated
                state.save()  # after each entry: a crash goes on from the next one
            outcomes.append(outcome)
            progress.step(outcome)
        # Entries that left the feed are forgotten; if one comes back, its URL is known.
        current = {e.key for e in entries}
        state.feeds[feed] = {k: v for k, v in seen.items() if k in current}
    state.save()
    return outcomes, problems


def _read_feed_page(
    config: Config, fetcher: Fetcher, store: Store, progress: Progress, found: FeedFound
) -> tuple[list[Outcome], Outcome | None]:
    """A feed given as a page, read once: its newest entries (sources.max_per_feed), none
    remembered, as it is followed by no one; or why it could not be read."""
    try:
        feed = parse_feed(found.page.body)
    except Skip as skip:
        return [], Outcome(found.page.url, "skipped", reason=skip.detail, kind=skip.kind)
    todo = _new_entries(feed.entries, {}, config.sources.max_per_feed)
    progress.add_total(len(todo))
    outcomes = []
    for entry in todo:
        outcome = _add_one(fetcher, store, entry.link, config.sources.max_article_chars)
        outcomes.append(outcome)
        progress.step(outcome)
    return outcomes, None


def _follow(
    config: Config, fetcher: Fetcher, urls: Sequence[str]
) -> tuple[dict[str, Feed], list[str], list[Outcome]]:
    """Each address read as a feed and, when it is one, followed: the feeds read (by their
    address as stored), those newly followed, and those that could not be followed."""
    read, followed, problems = {}, [], []
    when = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    for url in urls:
        try:
            address = check_url(url)
            feed = parse_feed(fetcher.get(address, html=False).body)
        except Skip as skip:
            problems.append(Outcome(url, "skipped", reason=skip.detail, kind=skip.kind))
            continue
        read[address] = feed
        if follow(config, address, feed.title, when):
            followed.append(address)
    return read, followed, problems


# Running


def _folder(config: Config) -> Path:
    corpus = config.corpus_path
    if corpus.exists() and not corpus.is_dir():
        raise TanyaError(
            f"corpus.path ({corpus}) is a file; fetched articles are written to a folder, "
            "so point corpus.path at a folder"
        )
    return config.sources_path


def ingest(
    config: Config,
    urls: Sequence[str] = (),
    feeds: bool = False,
    *,
    follow_feeds: Sequence[str] = (),
    feed_pages: bool = False,
    embedder: Embedder | None = None,
    run_reindex: bool = True,
    progress: Progress | None = None,
    reindex_progress=None,
    fetcher: Fetcher | None = None,
) -> IngestReport:
    """Fetch the pages at urls (and, with feeds, the new entries of every feed: those in
    sources.feeds and those followed) into the corpus, then bring the index up to date.

    follow_feeds: feeds to follow from now on (each read first: what is no feed is not
    followed), whose new entries are read now. feed_pages: an address in urls that is a
    feed is read once (its newest entries) instead of being skipped as no article.

    Holds the reindex lock throughout, so two runs (or a run and a reindex) never overlap;
    ReindexLockedError when another holds it.
    """
    folder = _folder(config)
    progress = progress or _NoProgress()
    with reindex_lock(config.index_path):
        store = Store(folder)
        store.remove_temporary_files()
        # A Fetcher made here is closed here; one passed in belongs to the caller.
        with nullcontext(fetcher) if fetcher else Fetcher(config.sources) as fetcher:
            progress.add_total(len(urls))
            outcomes: list[Outcome] = []
            problems: list[Outcome] = []
            found: list[str] = []
            for url in urls:
                try:
                    outcome = _add_one(
                        fetcher, store, url, config.sources.max_article_chars, feed_pages
                    )
                except FeedFound as feed:
                    entries, problem = _read_feed_page(config, fetcher, store, progress, feed)
                    outcomes += entries
                    problems += [problem] if problem else []
                    found += [] if problem else [url]
                    progress.step(Outcome(url, "feed"))
                    continue
                outcomes.append(outcome)
                progress.step(outcome)
            read, followed, not_followed = _follow(config, fetcher, follow_feeds)
            problems += not_followed
            to_read = feed_urls(config) if feeds else tuple(read)
            if to_read:
                more, unread = _read_feeds(config, fetcher, store, progress, to_read, read)
                outcomes += more
                problems += unread
        result = None
        if run_reindex:
            # Every run reindexes, changed or not: files a crashed run wrote get indexed.
            result = reindex(
                config, embedder=embedder, progress_factory=reindex_progress, locked=True
            )
    return IngestReport(tuple(outcomes), tuple(problems), result, tuple(followed), tuple(found))


class _Bar:
    """A progress bar over the addresses read, on a terminal."""

    def __init__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit="page", desc="fetching", leave=False)

    def add_total(self, n: int) -> None:
        self.bar.total += n
        self.bar.refresh()

    def step(self, outcome: Outcome) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def main(argv: list[str] | None = None) -> int:
    """tanya-add: fetch articles from the web into the corpus, then reindex."""
    parser = argparse.ArgumentParser(prog="tanya-add", description=main.__doc__, allow_abbrev=False)
    parser.add_argument(
        "urls",
        nargs="*",
        metavar="URL",
        help="article pages to add (a feed given here is read once: --feed follows it)",
    )
    parser.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="URL",
        help="follow this RSS or Atom feed and read it now (--feeds, /refresh and the bot's "
        "timer read it from then on)",
    )
    parser.add_argument(
        "--unfollow", action="append", default=[], metavar="URL", help="stop following a feed"
    )
    parser.add_argument(
        "--list-feeds", action="store_true", help="list the feeds: followed, and in the config"
    )
    parser.add_argument("--feeds", action="store_true", help="read the new entries of every feed")
    parser.add_argument("--config", help="config file (default: config.yaml)")
    parser.add_argument("--no-reindex", action="store_true", help="only write the files")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    reading = args.urls or args.feeds or args.feed
    if (args.list_feeds or args.unfollow) and (reading or (args.list_feeds and args.unfollow)):
        parser.error("--list-feeds and --unfollow go alone")
    if not (reading or args.list_feeds or args.unfollow):
        parser.error("give one or more URLs, --feed URL, --feeds, --unfollow URL or --list-feeds")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    bar = None
    started = time.perf_counter()
    try:
        config = load_config(args.config, os.environ)
        if args.list_feeds:
            return _list_feeds(config)
        if args.unfollow:
            return _unfollow(config, args.unfollow)
        if args.feeds and not (args.feed or args.urls or feed_urls(config)):
            print(f"tanya-add: {NO_FEEDS}", file=sys.stderr)
            return 1
        bar = _Bar() if not args.quiet and sys.stderr.isatty() else None
        report = ingest(
            config,
            args.urls,
            feeds=args.feeds,
            follow_feeds=args.feed,
            feed_pages=True,
            run_reindex=not args.no_reindex,
            progress=bar,
            reindex_progress=progress_factory(not args.quiet),
        )
    except TanyaError as exc:
        print(f"tanya-add: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ReindexLockedError) else 1
    except KeyboardInterrupt:
        print(
            "tanya-add: interrupted; the articles written so far are kept, run this again to go on",
            file=sys.stderr,
        )
        return 130
    finally:
        if bar is not None:
            bar.close()
    return _print_report(report, args.urls, args.feed, time.perf_counter() - started)


NO_FEEDS = (
    "no feeds are set up: follow one with tanya-add --feed URL "
    "(or list it in sources.feeds in the config)"
)


def _list_feeds(config: Config) -> int:
    followed = followed_feeds(config)
    if not followed and not config.sources.feeds:
        print(NO_FEEDS)
        return 0
    if followed:
        print("followed (tanya-add --unfollow URL stops one):")
        for feed in followed:
            parts = [feed.url, feed.title, f"since {feed.followed[:10]}" if feed.followed else ""]
            print(terminal_safe("  " + "  ".join(part for part in parts if part)))
    if config.sources.feeds:
        print(f"in sources.feeds ({config.source or 'the config'}):")
        for url in config.sources.feeds:
            print(terminal_safe(f"  {url}"))
    return 0


def _unfollow(config: Config, urls: Sequence[str]) -> int:
    with reindex_lock(config.index_path):  # not while a run reads the feeds
        for url in urls:
            gone = unfollow(config, url)
            print(
                terminal_safe(f"unfollowed {gone.url}" + (f" ({gone.title})" if gone.title else ""))
            )
    return 0


def _print_report(
    report: IngestReport, urls: Sequence[str], follows: Sequence[str], seconds: float
) -> int:
    for outcome in report.outcomes:
        if outcome.status == "skipped":
            line = f"skipped {outcome.url}: {outcome.reason}"
            print(terminal_safe(line), file=sys.stderr)
        else:
            print(terminal_safe(f"{outcome.status}: {outcome.title} ({outcome.path})"))
            if outcome.note:
                print(terminal_safe(f"  {outcome.note}"))
    for problem in report.feed_problems:
        print(terminal_safe(f"feed {problem.url} not read: {problem.reason}"), file=sys.stderr)
    not_read = {p.url for p in report.feed_problems}
    for url in follows:
        if url in not_read:
            continue
        if check_url(url) in report.followed:
            line = f"following {url}: tanya-add --feeds, /refresh and the bot's timer read it"
        else:
            line = f"already following {url}"
        print(terminal_safe(line))
    for url in report.feeds_found:
        line = f"{url} is a feed, read once; to follow it: tanya-add --feed {url}"
        print(terminal_safe(line))
    print(f"{report.summary}; {seconds:.1f} s")
    if report.reindex is not None:
        print_result(report.reindex)
    asked = set(urls)
    failed = any(o.status == "skipped" and o.url in asked for o in report.outcomes)
    return 1 if failed or report.feed_problems else 0


if __name__ == "__main__":
    sys.exit(main())
