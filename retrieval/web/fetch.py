"""Fetching web pages politely: robots.txt, one request at a time per host, size and time
limits, and only from public addresses unless the config allows private ones."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import httpcore
import httpx

from ..config import SourcesConfig

USER_AGENT = "tanya/0.1 (news question-answering bot; honours robots.txt)"
ROBOTS_AGENT = "tanya"  # the name robots.txt rules for this bot are written for
MAX_REDIRECTS = 10
MAX_ROBOTS_BYTES = 512 * 1024  # RFC 9309: at least 500 KiB are read
MAX_CRAWL_DELAY = 60.0  # a site's Crawl-delay is honoured up to this many seconds
REDIRECTS = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = ("text/html", "application/xhtml+xml")
# Read where a page was asked for too, within the same limits, so that a feed given as a
# page can be told apart (feeds.looks_like_feed) from other XML and said to be one.
FEED_TYPES = (
    "application/rss+xml",
    "application/atom+xml",
    "application/rdf+xml",
    "application/xml",
    "text/xml",
)


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
    """A fetched document: where it was asked for, where it ended up, its bytes and its
    content type (lowercase, without parameters; "" when the server named none)."""

    url: str
    final_url: str
    body: bytes
    content_type: str = ""


def normalise_url(url: str) -> str:
    """The URL without its fragment, with a lowercase scheme and host and a path of at least /."""
    parts = urlsplit(url.strip())
    path = parts.path or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


# Longer addresses are refused: no news article needs one, and each is kept in front matter,
# feed state and every source line shown to users.
MAX_URL_CHARS = 2048


def check_url(url: str) -> str:
    """The URL, normalised, if it is an http(s) address without a user name or password, of
    at most MAX_URL_CHARS characters; else Skip."""
    if len(url.strip()) > MAX_URL_CHARS:
        raise Skip("bad_url", f"the address is longer than {MAX_URL_CHARS:,} characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise Skip("bad_url", f"not a web address ({exc})") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise Skip("bad_url", "not an http:// or https:// address")
    if any(c.isspace() or ord(c) < 32 for c in url.strip()):
        raise Skip("bad_url", "spaces or control characters in the address")
    if parts.username is not None or parts.password is not None:
        # Never sent, never stored (they would be shown to every user as the source link).
        raise Skip("bad_url", "the address holds a user name or password; give it without them")
    if port == 0:
        raise Skip("bad_url", "port 0 is not a port")
    return normalise_url(url)


# Resolves a host name (or a numeric address in any form the system accepts) to addresses.
Resolver = Callable[[str], Sequence[str]]


def system_resolver(host: str) -> list[str]:
    """The host's addresses as the system resolves them: names, and numeric forms such as
    2130706433, 0x7f000001 and 127.1, which it reads as 127.0.0.1."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: str) -> bool:
    """Whether an address may be fetched from by default: not loopback, private, link-local,
    unique-local, multicast, reserved or unspecified, nor one of those inside IPv6 (mapped,
    6to4; NAT64's 64:ff9b::/96 lies in the reserved ::/8)."""
    ip = ipaddress.ip_address(address.split("%")[0])  # an IPv6 zone (fe80::1%eth0) aside
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is not None and not is_public(str(inner)):
            return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


class PrivateAddress(Exception):
    """A host resolved to an address tanya does not fetch from."""

    def __init__(self, host: str, address: str):
        shown = address if host.strip("[]") == address else f"{host} is {address}"
        super().__init__(
            f"private address ({shown}); fetched only with sources.allow_private_networks"
        )


class Addresses:
    """Each host resolved once per Fetcher and checked; the connection goes to an address
    checked here, so a DNS answer cannot change between the check and the connection."""

    def __init__(self, resolve: Resolver, allow_private: bool):
        self.resolve, self.allow_private = resolve, allow_private
        self._known: dict[str, list[str] | Exception] = {}
        self._lock = threading.Lock()

    def of(self, host: str, seconds: float) -> list[str]:
        """The host's addresses; PrivateAddress when one is private (and that is not allowed),
        OSError when it cannot be resolved within `seconds`."""
        with self._lock:
            known = self._known.get(host)
        if known is None:
            try:
                known = _within(seconds, lambda: list(self.resolve(host)))
                if not known:
                    raise OSError(f"{host} has no address")
                private = next((a for a in known if not is_public(a)), None)
                if private is not None and not self.allow_private:
                    raise PrivateAddress(host, private)
            except (OSError, ValueError, PrivateAddress) as exc:
                known = exc
            with self._lock:
                self._known[host] = known
        if isinstance(known, Exception):
            raise known
        return known


def _within(seconds: float, work: Callable[[], list[str]]) -> list[str]:
    """work() in a thread, given up on after `seconds` (a system resolver cannot be stopped:
    a slow name server must not hold the run past its deadline)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = work()
        except (OSError, ValueError) as exc:  # socket.gaierror is an OSError
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="tanya-resolve")
    thread.start()
    thread.join(max(0.0, seconds))
    if thread.is_alive():
        raise TimeoutError(f"resolving the name took over {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


class Deadline:
    """When the request under way must be over: its connection's every wait (resolving,
    connecting, TLS, each read and write) is cut to the time left. httpx's own timeouts
    count each wait apart, so a server sending a byte a second would never run out."""

    def __init__(self) -> None:
        self.at: float | None = None

    def start(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def stop(self) -> None:
        self.at = None

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def left(self, timeout: float | None, error: type[Exception]) -> float | None:
        """The wait allowed now: `timeout`, cut to the time left; `error` when none is."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise error("past the request's deadline")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait ends by the deadline of the request under way."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: Deadline):
        self.stream, self.deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self.deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self.deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        timeout = self.deadline.left(timeout, httpcore.ConnectTimeout)
        secure = self.stream.start_tls(ssl_context, server_hostname, timeout)
        return _DeadlineStream(secure, self.deadline)

    def get_extra_info(self, info: str):
        return self.stream.get_extra_info(info)


class _CheckedBackend(httpcore.NetworkBackend):
    """httpcore's connections, opened only to the checked addresses of their host (TLS is
    still verified against the host name), every wait within the request's deadline."""

    def __init__(self, addresses: Addresses, network: httpcore.NetworkBackend, deadline: Deadline):
        self.addresses, self.network, self.deadline = addresses, network, deadline

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            left = self.deadline.left(timeout, httpcore.ConnectTimeout)
            checked = self.addresses.of(host, left if left is not None else 60.0)
        except OSError as exc:  # PrivateAddress goes up as it is
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        error: Exception | None = None
        for address in checked:
            try:
                stream = self.network.connect_tcp(
                    address,
                    port,
                    self.deadline.left(timeout, httpcore.ConnectTimeout),
                    local_address,
                    socket_options,
                )
                return _DeadlineStream(stream, self.deadline)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("tanya fetches over TCP only")

    def sleep(self, seconds: float) -> None:
        self.network.sleep(seconds)


class _CheckedTransport(httpx.HTTPTransport):
    """httpx's transport over the checked backend."""

    def __init__(self, backend: _CheckedBackend):
        super().__init__(trust_env=False)
        # httpx takes no network backend: its pool is made again with ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), network_backend=backend
        )


class Fetcher:
    """GETs pages one at a time, waiting between requests to the same host, within limits.

    Every host's robots.txt is read once per Fetcher and obeyed (with its Crawl-delay, up to
    a minute); a robots.txt that cannot be reached (5xx, timeout) means nothing is fetched
    from that host this time, as RFC 9309 asks.
    """

    def __init__(
        self,
        config: SourcesConfig,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        resolve: Resolver = system_resolver,
        network: httpcore.NetworkBackend | None = None,
    ):
        self.config = config
        self.max_bytes = int(config.max_page_mb * 1024 * 1024)
        self.clock, self.sleep = clock, sleep
        self.addresses = Addresses(resolve, config.allow_private_networks)
        self.deadline = Deadline()
        backend = _CheckedBackend(self.addresses, network or httpcore.SyncBackend(), self.deadline)
        # trust_env=False: the core reads no environment variables (proxies included).
        self.client = httpx.Client(
            timeout=httpx.Timeout(config.timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            # Only the encodings undone here, layer by layer within the size limit.
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
            transport=_CheckedTransport(backend),
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

        html=True refuses documents that are not HTML or a feed's XML (a feed is read with
        html=False).
        """
        current = check_url(url)
        seen = [current]
        for _ in range(MAX_REDIRECTS + 1):
            self._check_address(current)  # first: a private address is never asked for robots
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
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            return Page(url=seen[0], final_url=current, body=body, content_type=kind)
        raise Skip("redirect", f"more than {MAX_REDIRECTS} redirects")

    def _check_address(self, url: str) -> None:
        """Skip("private") when the URL's host is (or resolves to) a private address."""
        host = urlsplit(url).hostname or ""
        try:
            self.addresses.of(host, self.config.timeout_seconds)
        except PrivateAddress as exc:
            raise Skip("private", str(exc)) from exc
        except OSError:
            pass  # said by the request itself, as a network error

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
        """GET url once (no redirects): status, headers and body, all within one deadline.

        A body over the page size limit is Skip, however it is encoded; with cut, only its
        first cut bytes are read.
        """
        limit = self.max_bytes if cut is None else cut
        site = self._site(url)
        self._wait_for(site)
        timeout = self.config.timeout_seconds
        self.deadline.start(timeout)  # connect, headers and body together
        try:
            with self.client.stream("GET", url) as response:
                status, headers = response.status_code, response.headers
                if status in REDIRECTS or status >= 400:
                    return status, headers, b""
                kind = headers.get("content-type", "").split(";")[0].strip().lower()
                if html and kind and kind not in HTML_TYPES and kind not in FEED_TYPES:
                    raise Skip("not_html", f"not an HTML page ({kind})")
                size = headers.get("content-length", "")
                if cut is None and size.isdigit() and int(size) > limit:
                    raise Skip("too_large", f"{_mb(int(size))} is over {_mb(limit)}")
                codings = content_codings(headers.get("content-encoding", ""))
                body = bytearray()
                for piece in decoded(response.iter_raw(), codings, self.max_bytes):
                    body += piece
                    if len(body) > limit:
                        if cut is not None:
                            return status, headers, bytes(body[:cut])
                        raise Skip("too_large", f"over {_mb(limit)}")
                    if self.deadline.passed():  # inflating is work too
                        raise httpx.ReadTimeout("past the request's deadline")
                return status, headers, bytes(body)
        except PrivateAddress as exc:  # robots.txt's redirect, say
            raise Skip("private", str(exc)) from exc
        except httpx.TimeoutException as exc:
            raise Skip("timeout", f"no answer within {timeout:g} s", True) from exc
        except zlib.error as exc:
            raise Skip("bad_encoding", f"the page's compressed data is damaged ({exc})") from exc
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            raise Skip("network", f"{type(exc).__name__}: {exc}", True) from exc
        finally:
            self.deadline.stop()
            self._last[site] = self.clock()


# Content encodings undone, and how many at most (a page is compressed once; twice is seen).
CODINGS = ("gzip", "x-gzip", "deflate")
MAX_CODINGS = 2
# Inflated a piece at a time: no call makes more than this, whatever a few bytes expand to.
PIECE = 64 * 1024


def content_codings(header: str) -> list[str]:
    """The content encodings of a response, in the order applied; Skip for more than
    MAX_CODINGS or one not read (only gzip and deflate are asked for)."""
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if len(codings) > MAX_CODINGS:
        raise Skip("bad_encoding", f"compressed {len(codings)} times ({header}); at most twice")
    unread = [c for c in codings if c not in CODINGS]
    if unread:
        raise Skip("bad_encoding", f"compressed as {unread[0]!r}, which is not read")
    return codings


def decoded(raw: Iterable[bytes], codings: Sequence[str], limit: int) -> Iterator[bytes]:
    """The body with its content encodings undone, in pieces of at most PIECE bytes; Skip
    once the body, or what any one layer inflates to, passes `limit` bytes."""
    pieces = _limited(raw, limit, "")
    for coding in reversed(codings):
        pieces = _limited(_inflated(pieces, coding), limit, " once inflated")
    return pieces


def _limited(pieces: Iterable[bytes], limit: int, how: str) -> Iterator[bytes]:
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > limit:
            raise Skip("too_large", f"over {_mb(limit)}{how}")
        yield piece


def _inflated(pieces: Iterable[bytes], coding: str) -> Iterator[bytes]:
    """One layer of gzip or deflate undone incrementally: each call to zlib makes at most
    PIECE bytes, the rest of its input waiting, so a bomb never inflates all at once."""
    gzip = coding != "deflate"
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
    first = True
    for data in pieces:
        while not inflater.eof:
            try:
                out = inflater.decompress(data, PIECE)
            except zlib.error:
                if gzip or not first:
                    raise
                # "deflate" without its zlib wrapper, as some servers send it.
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                out = inflater.decompress(data, PIECE)
            first = False
            if out:
                yield out
            data = inflater.unconsumed_tail
            if not data and len(out) < PIECE:
                break  # this input is used up and zlib holds nothing back


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.3g} MB"
