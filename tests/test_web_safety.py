"""Fetching from hostile addresses: private networks, redirects into them, credentials.

The site runs on 127.0.0.1, which tanya refuses by default; a test that needs a public host
resolves one with a fake resolver and lets a fake network backend carry the connection to the
local site, recording the address it was asked to connect to."""

from __future__ import annotations

import errno
import functools
import time
import tracemalloc
import zlib
from pathlib import Path

import httpcore
import pytest

from retrieval.config import Config
from retrieval.web.fetch import Fetcher, is_public
from retrieval.web.ingest import ingest
from tests.conftest import make_config
from tests.fake_web import (
    ARTICLE,
    FakeWeb,
    Response,
    big_feed,
    long_page,
    squeeze,
    web_fixture,  # noqa: F401 - the `web` fixture
)

PUBLIC = "93.184.216.34"  # what the fake resolver gives for berita.example


def config_for(tmp_path: Path, **sources) -> Config:
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    values = {"delay_seconds": 0, "timeout_seconds": 2, **sources}
    return make_config(corpus, tmp_path / "index" / ".index", sources=values)


class ToLocalSite(httpcore.SyncBackend):
    """Opens every connection to the local site, whatever address it is asked for, and
    records the addresses asked for (the checked ones, if the fetcher pins them)."""

    def __init__(self, web: FakeWeb):
        self.port = int(web.base.rsplit(":", 1)[1])
        self.asked: list[tuple[str, int]] = []

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.asked.append((host, port))
        return super().connect_tcp("127.0.0.1", self.port, timeout, local_address, socket_options)


class FakeResolver:
    """berita.example is public; any other name or number as the system resolves it."""

    def __init__(self, answers: list[str] | None = None):
        self.answers = answers or [PUBLIC]
        self.asked: list[str] = []

    def __call__(self, host: str) -> list[str]:
        from retrieval.web.fetch import system_resolver

        self.asked.append(host)
        if host == "berita.example":
            return [self.answers[min(len(self.asked), len(self.answers)) - 1]]
        return system_resolver(host)


def public_fetcher(config: Config, web: FakeWeb, resolver: FakeResolver | None = None):
    network = ToLocalSite(web)
    fetcher = Fetcher(config.sources, resolve=resolver or FakeResolver(), network=network)
    return fetcher, network


def public_url(web: FakeWeb, path: str) -> str:
    return web.base.replace("127.0.0.1", "berita.example") + path


FORMS = ["127.0.0.1", "localhost", "[::1]", "0x7f000001", "2130706433", "127.1"]
FORMS += ["[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0.0.0.0", "10.1.2.3", "169.254.169.254"]


@pytest.mark.parametrize("host", FORMS)
def test_each_form_of_a_private_address_is_refused(tmp_path, web, host):
    config = config_for(tmp_path)
    port = web.base.rsplit(":", 1)[1]
    report = ingest(config, [f"http://{host}:{port}{ARTICLE}"], run_reindex=False)
    (outcome,) = report.outcomes
    assert outcome.status == "skipped" and outcome.kind == "private", outcome
    assert outcome.reason.startswith("private address (")
    assert "robots" not in outcome.reason and not outcome.transient
    assert web.hits == []  # not even robots.txt was asked for


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0x7f000001", "2130706433", "127.1"])
def test_private_addresses_are_fetched_when_the_config_allows_them(tmp_path, web, host):
    config = config_for(tmp_path, allow_private_networks=True)
    port = web.base.rsplit(":", 1)[1]
    report = ingest(config, [f"http://{host}:{port}{ARTICLE}"], run_reindex=False)
    assert [o.status for o in report.outcomes] == ["added"], report.outcomes


def test_a_closed_private_port_says_private_address_not_robots(tmp_path):
    report = ingest(config_for(tmp_path), ["http://127.0.0.1:1/"], run_reindex=False)
    (outcome,) = report.outcomes
    assert outcome.kind == "private" and "Connection refused" not in outcome.reason


def test_a_public_address_is_fetched_by_connecting_to_the_address_checked(tmp_path, web):
    config = config_for(tmp_path)
    resolver = FakeResolver()
    fetcher, network = public_fetcher(config, web, resolver)
    with fetcher:
        report = ingest(config, [public_url(web, ARTICLE)], run_reindex=False, fetcher=fetcher)
    assert [o.status for o in report.outcomes] == ["added"]
    assert {host for host, _ in network.asked} == {PUBLIC}
    assert resolver.asked == ["berita.example"]  # once, for robots.txt and the page


def test_a_dns_answer_that_changes_after_the_check_is_not_followed(tmp_path, web):
    # A name that answers a public address first and loopback after (DNS rebinding).
    config = config_for(tmp_path)
    resolver = FakeResolver([PUBLIC, "127.0.0.1"])
    fetcher, network = public_fetcher(config, web, resolver)
    with fetcher:
        ingest(
            config, [public_url(web, ARTICLE), public_url(web, "/hilang")], False, fetcher=fetcher
        )
    assert network.asked and {host for host, _ in network.asked} == {PUBLIC}


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/rahasia", "http://localhost:{port}/"])
def test_a_redirect_from_a_public_host_to_loopback_is_refused(tmp_path, web, target):
    port = web.base.rsplit(":", 1)[1]
    web.serve("/pindah", Response(302, headers={"Location": target.format(port=port)}))
    web.serve("/rahasia", web.page("berita.html"))
    config = config_for(tmp_path)
    fetcher, network = public_fetcher(config, web)
    with fetcher:
        report = ingest(config, [public_url(web, "/pindah")], run_reindex=False, fetcher=fetcher)
    (outcome,) = report.outcomes
    assert outcome.kind == "private" and outcome.reason.startswith("private address")
    assert web.requests_for("/rahasia") == [] and web.requests_for("/") == []
    assert {host for host, _ in network.asked} == {PUBLIC}


FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Warta</title><link>{base}/</link>
<item><title>Rahasia</title><link>http://127.0.0.1:{port}/rahasia</link></item>
<item><title>Berkredensial</title><link>http://admin:sandi@{host}/kredensial</link></item>
<item><title>Jembatan</title><link>{base}{article}</link></item>
</channel></rss>"""


def test_a_feed_entry_pointing_at_loopback_is_refused(tmp_path, web):
    base = public_url(web, "")
    port = web.base.rsplit(":", 1)[1]
    feed = FEED.format(base=base, port=port, host=base.split("//")[1], article=ARTICLE)
    web.serve("/feed.xml", Response(body=feed.encode(), content_type="application/rss+xml"))
    web.serve("/rahasia", web.page("berita.html"))
    web.serve("/kredensial", web.page("berita.html"))
    config = config_for(tmp_path, feeds=[public_url(web, "/feed.xml")])
    fetcher, _ = public_fetcher(config, web)
    with fetcher:
        report = ingest(config, feeds=True, run_reindex=False, fetcher=fetcher)
    outcomes = {o.url.rsplit("/", 1)[1]: o for o in report.outcomes}
    assert outcomes["rahasia"].kind == "private"
    assert outcomes["kredensial"].kind == "bad_url"
    assert "user name or password" in outcomes["kredensial"].reason
    assert [o.status for o in report.outcomes if o.kind not in ("private", "bad_url")] == ["added"]
    assert web.requests_for("/rahasia") == [] and web.requests_for("/kredensial") == []


def test_credentials_in_an_address_are_never_sent_or_stored(tmp_path, web):
    config = config_for(tmp_path, allow_private_networks=True)
    with_password = web.url(ARTICLE).replace("http://", "http://redaksi:sandi-rahasia@")
    web.serve("/ke-kredensial", Response(302, headers={"Location": with_password}))
    # A page that names an address with a password as its canonical URL.
    page = web.page("berita.html").replace(b'href="http://', b'href="http://redaksi:sandi@')
    web.serve("/kanonis", page)
    urls = [with_password, web.url("/ke-kredensial"), web.url("/kanonis")]
    report = ingest(config, urls, run_reindex=False)
    first, redirected, canonical = report.outcomes
    for outcome in (first, redirected):
        assert outcome.kind == "bad_url" and "user name or password" in outcome.reason
    assert canonical.status == "added"
    assert [h.path for h in web.hits] == ["/robots.txt", "/ke-kredensial", "/kanonis"]
    for path in config.corpus_path.rglob("*"):
        if path.is_file():
            assert "sandi" not in path.read_text("utf-8") and "redaksi:" not in path.read_text(
                "utf-8"
            )


@pytest.mark.parametrize(
    "address, public",
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # shared address space (carrier-grade NAT)
        ("169.254.169.254", False),  # link-local: cloud metadata
        ("fe80::1%eth0", False),
        ("fc00::1", False),  # unique-local
        ("fd12:3456::1", False),
        ("224.0.0.1", False),  # multicast
        ("ff02::1", False),
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("0.0.0.0", False),
        ("::", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::5db8:d822", False),  # NAT64, even of 93.184.216.34: in the reserved ::/8
        ("2002:5db8:d822::", True),  # 6to4 of 93.184.216.34
        ("198.18.0.1", False),  # benchmarking
        ("192.0.2.1", False),  # documentation
    ],
)
def test_which_addresses_count_as_public(address, public):
    assert is_public(address) is public


@functools.lru_cache(maxsize=2)
def double_bomb(coding: str, mib: int = 512) -> bytes:
    """A few kilobytes that inflate, compressed twice over, to `mib` MiB of zeros."""
    inner = squeeze((bytes(1 << 20) for _ in range(mib)), coding)
    return squeeze([inner], coding)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_double_compression_bomb_stops_at_the_page_limit(tmp_path, web, coding):
    body = double_bomb(coding)
    assert len(body) < 5000
    web.serve("/bom", Response(body=body, headers={"Content-Encoding": f"{coding}, {coding}"}))
    config = config_for(tmp_path, allow_private_networks=True, max_page_mb=5)
    tracemalloc.start()
    try:
        report = ingest(config, [web.url("/bom"), web.url(ARTICLE)], run_reindex=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bombed, added = report.outcomes
    assert bombed.kind == "too_large" and bombed.reason == "over 5 MB once inflated"
    assert added.status == "added"  # one bad page, and the run goes on
    assert peak < 48 * 2**20  # the page limit and a few pieces, never the 512 MiB


@pytest.mark.parametrize(
    "encoding, pack",
    [
        ("gzip", lambda page: squeeze([page], "gzip")),
        ("gzip, gzip", lambda page: squeeze([squeeze([page], "gzip")], "gzip")),
        ("deflate", lambda page: squeeze([page], "deflate")),
        ("deflate", lambda page: zlib.compress(page)[2:-4]),  # raw, without zlib's wrapper
        ("x-gzip, identity", lambda page: squeeze([page], "gzip")),
    ],
    ids=["gzip", "gzip-twice", "deflate", "raw-deflate", "x-gzip"],
)
def test_compressed_pages_are_read(tmp_path, web, encoding, pack):
    body = pack(web.page("berita.html"))
    web.serve("/padat", Response(body=body, headers={"Content-Encoding": encoding}))
    config = config_for(tmp_path, allow_private_networks=True)
    report = ingest(config, [web.url("/padat")], run_reindex=False)
    assert [o.status for o in report.outcomes] == ["added"], report.outcomes


@pytest.mark.parametrize(
    "encoding, reason",
    [
        ("gzip, gzip, gzip", "compressed 3 times (gzip, gzip, gzip); at most twice"),
        ("br", "compressed as 'br', which is not read"),
    ],
)
def test_more_than_two_or_unknown_encodings_are_refused(tmp_path, web, encoding, reason):
    web.serve("/padat", Response(body=b"\x1f\x8b", headers={"Content-Encoding": encoding}))
    config = config_for(tmp_path, allow_private_networks=True)
    (outcome,) = ingest(config, [web.url("/padat")], run_reindex=False).outcomes
    assert outcome.kind == "bad_encoding" and outcome.reason == reason


def test_damaged_compressed_data_skips_the_page(tmp_path, web):
    web.serve(
        "/rusak-gz", Response(body=b"\x1f\x8b" + b"x" * 50, headers={"Content-Encoding": "gzip"})
    )
    config = config_for(tmp_path, allow_private_networks=True)
    (outcome,) = ingest(config, [web.url("/rusak-gz")], run_reindex=False).outcomes
    assert outcome.kind == "bad_encoding" and "compressed data is damaged" in outcome.reason


@pytest.mark.parametrize("slow", ["page", "robots.txt"])
def test_headers_sent_a_byte_at_a_time_give_up_at_the_timeout(tmp_path, web, slow):
    # About 600 bytes of status line and headers, one every 0.05 s: half a minute in all.
    if slow == "page":
        web.serve(ARTICLE, Response(body=web.page("berita.html"), trickle=0.05))
    else:
        web.serve("/robots.txt", Response(body=b"User-agent: *\n", trickle=0.05))
    config = config_for(tmp_path, allow_private_networks=True, timeout_seconds=1)
    started = time.monotonic()
    (outcome,) = ingest(config, [web.url(ARTICLE)], run_reindex=False).outcomes
    assert time.monotonic() - started < 1 + 2
    assert outcome.transient
    if slow == "page":
        assert outcome.kind == "timeout" and outcome.reason == "no answer within 1 s"
    else:
        assert outcome.kind == "robots"
        assert outcome.reason == "robots.txt could not be read (no answer within 1 s)"


def test_a_feed_of_30000_entries_is_read_in_linear_time(tmp_path, web, monkeypatch):
    import feedparser

    real, spent = feedparser.parse, []

    def timed(*args, **kwargs):  # feedparser itself, timed apart: its time is the floor
        started = time.monotonic()
        try:
            return real(*args, **kwargs)
        finally:
            spent.append(time.monotonic() - started)

    monkeypatch.setattr(feedparser, "parse", timed)
    web.serve(
        "/besar.xml", Response(body=big_feed(web, 30_000), content_type="application/rss+xml")
    )
    config = config_for(
        tmp_path, allow_private_networks=True, feeds=[web.url("/besar.xml")], max_per_feed=5
    )
    started = time.monotonic()
    report = ingest(config, feeds=True, run_reindex=False)
    ours = time.monotonic() - started - sum(spent)
    # Each link twice: five different ones are read, none twice (all 404 here).
    assert [o.url.removeprefix(web.base) for o in report.outcomes] == [
        f"/kabar/{i}" for i in range(5)
    ]
    # Compared with feedparser's own time, so a busy machine slows both alike: tanya's part
    # is a small share of it (0.3 s of 3 s here); quadratic, it was ten times feedparser's.
    assert ours < sum(spent)


def test_a_page_of_40000_paragraphs_is_cut_in_linear_time(tmp_path, web, monkeypatch):
    import trafilatura

    real, spent = trafilatura.bare_extraction, []

    def timed(*args, **kwargs):  # trafilatura itself, timed apart: its time is the floor
        started = time.monotonic()
        try:
            return real(*args, **kwargs)
        finally:
            spent.append(time.monotonic() - started)

    monkeypatch.setattr(trafilatura, "bare_extraction", timed)
    web.serve("/panjang", long_page(40_000))
    config = config_for(tmp_path, allow_private_networks=True, max_article_chars=50_000)
    started = time.monotonic()
    (outcome,) = ingest(config, [web.url("/panjang")], run_reindex=False).outcomes
    ours = time.monotonic() - started - sum(spent)
    assert outcome.status == "added"
    assert (
        outcome.note.startswith("too long: its first ") and "of 40,000 paragraphs" in outcome.note
    )
    text = Path(outcome.path).read_text("utf-8")
    assert "nomor 0 melaporkan" in text and "nomor 39999 " not in text
    assert len(text) < 60_000
    # Compared with trafilatura's own time (7 s here), so a busy machine slows both alike:
    # tanya's part is well under a second; quadratic, it was about three times trafilatura's.
    assert ours < sum(spent)


def test_an_article_of_more_paragraphs_than_kept_says_so(tmp_path, web, capsys):
    from retrieval.web import ingest as ingest_module

    web.serve("/panjang", long_page(1500))
    config = config_for(tmp_path, allow_private_networks=True)
    (outcome,) = ingest(config, [web.url("/panjang")], run_reindex=False).outcomes
    assert outcome.note.startswith(f"too long: its first {ingest_module.MAX_PARAGRAPHS:,} of 1,500")
    assert Path(outcome.path).read_text("utf-8").count("melaporkan banjir") == 1000


def test_a_write_error_skips_that_article_and_the_rest_go_on(tmp_path, web, monkeypatch):
    from retrieval.web import ingest as ingest_module

    real = ingest_module.write_atomically

    def full_disk_once(path, text):
        if "kiaracondong" in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(ingest_module, "write_atomically", full_disk_once)
    config = config_for(tmp_path, allow_private_networks=True)
    report = ingest(config, [web.url(ARTICLE), web.url("/indeks")], run_reindex=False)
    failed = report.outcomes[0]
    assert failed.status == "skipped" and failed.kind == "write" and failed.transient
    assert failed.reason == "could not be written (No space left on device)"
    assert report.outcomes[1].status == "skipped" and report.outcomes[1].kind == "not_article"


def test_a_host_name_of_253_characters_is_stored(tmp_path, web):
    host = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(host) == 253

    class AnyName(FakeResolver):
        def __call__(self, name: str) -> list[str]:
            return [PUBLIC]

    config = config_for(tmp_path)
    fetcher, _ = public_fetcher(config, web, AnyName())
    url = web.base.replace("127.0.0.1", host) + ARTICLE
    with fetcher:
        (outcome,) = ingest(config, [url], run_reindex=False, fetcher=fetcher).outcomes
    assert outcome.status == "added", outcome
    assert len(Path(outcome.path).parent.name) <= 100 + len("-65535")  # the site, its port


def test_an_overlong_address_is_refused_and_never_stored(tmp_path, web):
    config = config_for(tmp_path, allow_private_networks=True)
    long_url = web.url("/berita/" + "a" * 3000)
    web.serve("/ke-panjang", Response(302, headers={"Location": long_url}))
    # A page that names an over-long address as its canonical URL: its own address is kept.
    tag = f'<link rel="canonical" href="{web.url(ARTICLE)}">'.encode()
    named = f'<link rel="canonical" href="{long_url}">'.encode()
    page = web.page("berita.html").replace(tag, named)
    assert page != web.page("berita.html")
    web.serve("/kanonis-panjang", page)
    urls = [long_url, web.url("/ke-panjang"), web.url("/kanonis-panjang")]
    given, redirected, canonical = ingest(config, urls, run_reindex=False).outcomes
    for outcome in (given, redirected):
        assert outcome.kind == "bad_url" and "longer than 2,048 characters" in outcome.reason
    assert canonical.status == "added"
    (path,) = [p for p in config.corpus_path.rglob("*.md")]
    assert "a" * 3000 not in path.read_text("utf-8")
    assert web.url("/kanonis-panjang") in path.read_text("utf-8")
