"""Which feeds are read, and what a feed looks like.

Feeds come from two places: `sources.feeds` in the hand-written config, and the list that
`tanya-add --feed URL` keeps in a hidden file beside the fetched articles (the config is
never rewritten). A document is taken for a feed by its content type or, whatever the
server calls it, by its first element (<rss>, <feed>, <rdf:RDF>).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import Config
from ..errors import TanyaError
from .fetch import Skip, check_url
from .files import write_atomically

FOLLOWED_FILE = ".followed-feeds.json"
# The list is the tool's own file, but a hand-edited or damaged one is still read within
# bounds: at most this many bytes and feeds, each address checked as if it had been typed.
MAX_FOLLOWED_BYTES = 1024 * 1024
MAX_FOLLOWED = 1000
MAX_TITLE_CHARS = 200
# A feed's root element comes within its first few kilobytes (after the XML declaration,
# comments, a doctype, a byte order mark).
SNIFF_BYTES = 4096
_FIRST_ELEMENT = re.compile(rb"\s*<([A-Za-z_][\w.:-]*)")
_SKIPPED = re.compile(rb"\s*(<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>)", re.S | re.I)
_FEED_ROOTS = {b"rss", b"feed", b"rdf:rdf"}
# Types that say "feed" outright (application/xml and text/xml are many things).
_FEED_ONLY_TYPES = {"application/rss+xml", "application/atom+xml", "application/rdf+xml"}


def looks_like_feed(body: bytes, content_type: str = "") -> bool:
    """Whether a document is an RSS or Atom feed: by a content type that says so, else by
    its root element (which a feed served as text/html or application/xml still has)."""
    if content_type in _FEED_ONLY_TYPES:
        return True
    head = body[:SNIFF_BYTES].removeprefix(b"\xef\xbb\xbf")
    at = 0
    while (skipped := _SKIPPED.match(head, at)) is not None:
        at = skipped.end()
    first = _FIRST_ELEMENT.match(head, at)
    return first is not None and first.group(1).lower() in _FEED_ROOTS


@dataclass(frozen=True)
class FollowedFeed:
    """A feed tanya-add --feed subscribed to: its address, its title then, and when."""

    url: str
    title: str = ""
    followed: str = ""


def followed_path(config: Config) -> Path:
    return config.sources_path / FOLLOWED_FILE


def followed_feeds(config: Config) -> list[FollowedFeed]:
    """The feeds tanya-add --feed subscribed to ([] when none; a damaged list is read as far
    as it is sound)."""
    try:
        with open(followed_path(config), "rb") as file:
            data = json.loads(file.read(MAX_FOLLOWED_BYTES + 1)[:MAX_FOLLOWED_BYTES])
        items = data.get("feeds", []) if isinstance(data, dict) else []
    except (OSError, ValueError, RecursionError):
        return []
    feeds: dict[str, FollowedFeed] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            continue
        try:
            url = check_url(item["url"])
        except Skip:
            continue
        title, followed = item.get("title"), item.get("followed")
        feeds.setdefault(
            url,
            FollowedFeed(
                url,
                title[:MAX_TITLE_CHARS] if isinstance(title, str) else "",
                followed if isinstance(followed, str) else "",
            ),
        )
        if len(feeds) == MAX_FOLLOWED:
            break
    return list(feeds.values())


def save_followed(config: Config, feeds: list[FollowedFeed]) -> None:
    """Write the list whole or not at all."""
    data = {"version": 1, "feeds": [asdict(f) for f in feeds]}
    write_atomically(followed_path(config), json.dumps(data, indent=1, ensure_ascii=False))


def feed_urls(config: Config) -> tuple[str, ...]:
    """Every feed to read: those in sources.feeds, then those followed."""
    followed = (f.url for f in followed_feeds(config))
    return tuple(dict.fromkeys([*config.sources.feeds, *followed]))


def follow(config: Config, url: str, title: str, when: str) -> bool:
    """Add the feed to the followed list; False when it is read already (followed, or in
    sources.feeds)."""
    url = check_url(url)
    if url in {_same(f) for f in config.sources.feeds}:
        return False
    feeds = followed_feeds(config)
    if any(f.url == url for f in feeds):
        return False
    if len(feeds) >= MAX_FOLLOWED:
        raise TanyaError(f"{len(feeds)} feeds are followed already, the most there can be")
    save_followed(config, [*feeds, FollowedFeed(url, title[:MAX_TITLE_CHARS], when)])
    return True


def unfollow(config: Config, url: str) -> FollowedFeed:
    """Take the feed off the followed list; TanyaError, saying why, when it is not on it."""
    try:
        wanted = check_url(url)
    except Skip as skip:
        raise TanyaError(f"{url}: {skip.detail}") from None
    feeds = followed_feeds(config)
    gone = next((f for f in feeds if f.url == wanted), None)
    if gone is not None:
        save_followed(config, [f for f in feeds if f is not gone])
        return gone
    if wanted in {_same(f) for f in config.sources.feeds}:
        where = config.source or "the config"
        raise TanyaError(f"{url} is in sources.feeds in {where}: remove it there")
    raise TanyaError(f"{url} is not followed (tanya-add --list-feeds lists the feeds)")


def _same(url: str) -> str:
    """The address as follow() stores it (a configured one that is no address: itself)."""
    try:
        return check_url(url)
    except Skip:
        return url
