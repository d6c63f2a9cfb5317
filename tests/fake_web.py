"""A small news site on 127.0.0.1 for the ingestion tests: real HTTP, pages from fixtures/web."""

from __future__ import annotations

import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "web"

ARTICLE = "/nasional/2024/03/12/jembatan-layang-kiaracondong-resmi-dibuka"
TWO_PARTS = "/ekonomi/festival-kopi-nusantara-makassar"


@dataclass
class Response:
    """What the site answers at one path: status, headers, body, and a delay before it."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    length: bool = True  # send Content-Length (else the body ends when the connection does)
    trickle: float = 0.0  # seconds between the bytes of the status line and headers


@dataclass(frozen=True)
class Hit:
    path: str
    user_agent: str
    at: float


class FakeWeb:
    """The site: routes by path (with query), every request recorded."""

    def __init__(self) -> None:
        self.routes: dict[str, Response] = {}
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))
        self._thread.daemon = True

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def page(self, name: str) -> bytes:
        """A fixture page with this site's address filled in."""
        text = (FIXTURES / name).read_text("utf-8")
        return text.replace("{base}", self.base).encode("utf-8")

    def serve(self, path: str, response: Response | bytes) -> None:
        if isinstance(response, bytes):
            response = Response(body=response)
        with self._lock:
            self.routes[path] = response

    def requests_for(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    def start(self) -> FakeWeb:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeWeb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                with web._lock:
                    web.hits.append(
                        Hit(self.path, self.headers.get("User-Agent", ""), time.monotonic())
                    )
                    response = web.routes.get(self.path)
                if response is None:
                    response = Response(404, b"<html><body><h1>Tidak ditemukan</h1></body></html>")
                try:
                    if response.delay:
                        time.sleep(response.delay)
                    if response.trickle:
                        return self._trickle(response)
                    self.send_response(response.status)
                    self.send_header("Content-Type", response.content_type)
                    if response.length:
                        self.send_header("Content-Length", str(len(response.body)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(response.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout, a page too large)

            def _trickle(self, response: Response) -> None:
                """The status line and headers one byte at a time, then the body."""
                head = f"HTTP/1.0 {response.status} OK\r\nContent-Type: {response.content_type}\r\n"
                head += "".join(f"X-Lambat-{i}: {'.' * 20}\r\n" for i in range(20))
                head += f"Content-Length: {len(response.body)}\r\n\r\n"
                for byte in head.encode():
                    self.wfile.write(bytes([byte]))
                    time.sleep(response.trickle)
                self.wfile.write(response.body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler


def big_feed(web: FakeWeb, entries: int) -> bytes:
    """An RSS feed of many entries, each listed twice (the second time under another id)."""
    items = "".join(
        f"<item><title>Kabar {i}</title><link>{web.base}/kabar/{i // 2}</link>"
        f"<guid>kabar-{i}</guid></item>\n"
        for i in range(entries)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Warta</title>'
        f"<link>{web.base}/</link>{items}</channel></rss>"
    ).encode()


def long_page(paragraphs: int) -> bytes:
    """A page of one article in that many short, different paragraphs."""
    body = "".join(
        f"<p>Warga kampung nomor {i} melaporkan banjir setinggi {i % 97} sentimeter.</p>\n"
        for i in range(paragraphs)
    )
    return (
        "<html lang='id'><head><title>Banjir Besar</title></head><body><article>"
        f"<h1>Banjir Besar di Kampung</h1>{body}</article></body></html>"
    ).encode()


def squeeze(chunks, coding: str) -> bytes:
    """The chunks compressed as one gzip or deflate (zlib) stream."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31 if coding == "gzip" else 15)
    return b"".join([*(packer.compress(c) for c in chunks), packer.flush()])


def news_site(web: FakeWeb) -> FakeWeb:
    """The pages every ingestion test uses."""
    web.serve("/robots.txt", Response(body=b"User-agent: *\nDisallow: /private/\n",
                                      content_type="text/plain"))  # fmt: skip
    web.serve(ARTICLE, web.page("berita.html"))
    web.serve(ARTICLE + "?utm_source=rss", web.page("berita.html"))  # the same page, tagged
    web.serve(TWO_PARTS, web.page("dua-halaman-1.html"))
    web.serve(TWO_PARTS + "?page=2", web.page("dua-halaman-2.html"))
    web.serve("/indeks", web.page("indeks.html"))
    web.serve("/kosong", web.page("kosong.html"))
    web.serve("/private/rahasia", web.page("berita.html"))
    web.serve("/lambat", Response(body=web.page("berita.html"), delay=3.0))
    web.serve("/putar-a", Response(302, headers={"Location": "/putar-b"}))
    web.serve("/putar-b", Response(302, headers={"Location": "/putar-a"}))
    web.serve("/foto.png", Response(body=b"\x89PNG\r\n\x1a\n" + b"\0" * 100,
                                    content_type="image/png"))  # fmt: skip
    web.serve("/rusak", Response(500, b"<html><body>Server error</body></html>"))
    web.serve("/feed.xml", Response(body=web.page("feed.xml"), content_type="application/rss+xml"))
    return web


@pytest.fixture(name="web")
def web_fixture():
    """The news site on 127.0.0.1 for one test: a test module imports this to ask for `web`."""
    with FakeWeb() as site:
        yield news_site(site)
