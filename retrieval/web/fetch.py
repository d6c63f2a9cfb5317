"""Fetching web pages politely: robots.txt, one request at a time per host, size and time limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import httpx

from ..config import SourcesConfig

USER_AGENT = "tanya/0.1 (news question-answering bot; honours robots.txt)"
ROBOTS_AGENT = "tanya"  # the name robots.txt rules for this bot are written for
MAX_REDIRECTS = 10
MAX_ROBOTS_BYTES = 512 * 1024  # RFC 9309: at least 500 KiB are read
MAX_CRAWL_DELAY = 60.0  # a site's Crawl-delay is honoured up to this many seconds
REDIRECTS = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = ("text/html", "application/xhtml+xml")


class Skip(Exception):
    """A page (or feed) that cannot be used, and why: kind names the reason, detail says it;
    transient when trying again later may well work (a timeout, a server error)."""

    def __init__(self, kind: str, detail: str, transient: bool = False):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.transient = transient


@dataclass(frozen=True)
class Page:
    """A fetched document: where it was asked for, where it ended up, and its bytes."""

    url: str
    final_url: str
    body: bytes


def normalise_url(url: str) -> str:
    """The URL without its fragment, with a lowercase scheme and host and a path of at least /."""
    parts = urlsplit(url.strip())
    path = parts.path or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def check_url(url: str) -> str:
    """The URL, normalised, if it is an http(s) address; else Skip."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise Skip("bad_url", f"not a web address ({exc})") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise Skip("bad_url", "not an http:// or https:// address")
    if any(c.isspace() or ord(c) < 32 for c in url.strip()):
        raise Skip("bad_url", "spaces or control characters in the address")
    return normalise_url(url)


class Fetcher:
    """GETs pages one at a time, waiting between requests to the same host, within limits.

    Every host's robots.txt is read once per Fetcher and obeyed (with its Crawl-delay, up to
    a minute); a robots.txt that cannot be reached (5xx, timeout) means nothing is fetched
    from that host this time, as RFC 9309 asks.
    """

    def __init__(
        self,
        config: SourcesConfig,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.config = config
        self.max_bytes = int(config.max_page_mb * 1024 * 1024)
        self.clock, self.sleep = clock, sleep
        # trust_env=False: the core reads no environment variables (proxies included).
        self.client = httpx.Client(
            timeout=httpx.Timeout(config.timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )
        self._last: dict[str, float] = {}
        self._robots: dict[str, RobotFileParser | Skip] = {}

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, url: str, html: bool = True) -> Page:
        """The page at url after redirects; Skip with the reason when it cannot be had.

        html=True refuses documents that are not HTML (a feed is read with html=False).
        """
        current = check_url(url)
        seen = [current]
        for _ in range(MAX_REDIRECTS + 1):
            self._allowed(current)
            status, headers, body = self._request(current, html)
            if status in REDIRECTS and headers.get("location"):
                target = check_url(urljoin(current, headers["location"]))
                if target in seen:
                    raise Skip("redirect", f"redirect loop ({current} leads back to {target})")
                seen.append(target)
                current = target
                continue
            if status >= 400:
                raise Skip("http", f"HTTP {status}", transient=status >= 500 or status == 429)
            if status != 200:
                raise Skip("http", f"HTTP {status} instead of a page")
            return Page(url=seen[0], final_url=current, body=body)
        raise Skip("redirect", f"more than {MAX_REDIRECTS} redirects")

    # Politeness

    def _site(self, url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def _delay(self, site: str) -> float:
        robots = self._robots.get(site)
        seconds = None
        if isinstance(robots, RobotFileParser):
            seconds = robots.crawl_delay(ROBOTS_AGENT)  # whole seconds: only digits are read
        return max(self.config.delay_seconds, min(seconds or 0, MAX_CRAWL_DELAY))

    def _wait_for(self, site: str) -> None:
        last = self._last.get(site)
        if last is not None:
            wait = last + self._delay(site) - self.clock()
            if wait > 0:
                self.sleep(wait)

    def _allowed(self, url: str) -> None:
        site = self._site(url)
        if site not in self._robots:
            self._robots[site] = self._read_robots(site)
        robots = self._robots[site]
        if isinstance(robots, Skip):
            raise Skip(robots.kind, robots.detail, robots.transient)
        if not robots.can_fetch(ROBOTS_AGENT, url):
            raise Skip("robots", "the site's robots.txt does not allow tanya to fetch this page")

    def _read_robots(self, site: str) -> RobotFileParser | Skip:
        parser = RobotFileParser(f"{site}/robots.txt")
        url = f"{site}/robots.txt"
        try:
            for _ in range(5):  # RFC 9309: follow at least five redirects
                status, headers, body = self._request(url, html=False, cut=MAX_ROBOTS_BYTES)
                if status in REDIRECTS and headers.get("location"):
                    url = check_url(urljoin(url, headers["location"]))
                    continue
                break
        except Skip as skip:
            detail = f"robots.txt could not be read ({skip.detail})"
            return Skip("robots", detail, transient=True)
        if 200 <= status < 300:
            if len(body) == MAX_ROBOTS_BYTES:  # cut short: its last line may be half a rule
                body = body[: body.rfind(b"\n") + 1]
            parser.parse(body.decode("utf-8", "replace").splitlines())
        elif 400 <= status < 500:
            parser.allow_all = True  # no robots.txt: everything may be fetched
        else:
            return Skip("robots", f"robots.txt could not be read (HTTP {status})", transient=True)
        return parser

    # One request

    def _request(
        self, url: str, html: bool, cut: int | None = None
    ) -> tuple[int, httpx.Headers, bytes]:
        """GET url once (no redirects): status, headers and body.

        A body over the page size limit is Skip; with cut, only its first cut bytes are read.
        """
        limit = self.max_bytes if cut is None else cut
        site = self._site(url)
        self._wait_for(site)
        timeout = self.config.timeout_seconds
        started = self.clock()
        try:
            with self.client.stream("GET", url) as response:
                status, headers = response.status_code, response.headers
                if status in REDIRECTS or status >= 400:
                    return status, headers, b""
                kind = headers.get("content-type", "").split(";")[0].strip().lower()
                if html and kind and kind not in HTML_TYPES:
                    raise Skip("not_html", f"not an HTML page ({kind})")
                size = headers.get("content-length", "")
                if cut is None and size.isdigit() and int(size) > limit:
                    raise Skip("too_large", f"{_mb(int(size))} is over {_mb(limit)}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        if cut is not None:
                            return status, headers, bytes(body[:cut])
                        raise Skip("too_large", f"over {_mb(limit)}")
                    if self.clock() - started > timeout:
                        raise Skip("timeout", f"the page took over {timeout:g} s", True)
                return status, headers, bytes(body)
        except httpx.TimeoutException as exc:
            raise Skip("timeout", f"no answer within {timeout:g} s", True) from exc
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            raise Skip("network", f"{type(exc).__name__}: {exc}", True) from exc
        finally:
            self._last[site] = self.clock()


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.3g} MB"
