"""Feeds from the command line: tanya-add --feed, --unfollow, --list-feeds, a feed given as a
page, and the links: of an article reached through several addresses (a site on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.config import Config, load_config
from retrieval.corpus.articles import load_corpus
from retrieval.errors import TanyaError
from retrieval.web.feeds import (
    FOLLOWED_FILE,
    MAX_FOLLOWED_BYTES,
    feed_urls,
    followed_feeds,
    looks_like_feed,
    unfollow,
)
from retrieval.web.ingest import MAX_LINKS, ingest, main, read_front_matter
from tests.conftest import make_config
from tests.fake_web import (
    ARTICLE,
    TWO_PARTS,
    FakeWeb,
    Response,
    web_fixture,  # noqa: F401 - the `web` fixture
)

TITLE = "Jembatan Layang Kiaracondong Resmi Dibuka untuk Umum"
ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Warta Atom</title>
  <id>urn:warta</id>
  <updated>2024-05-20T14:00:00Z</updated>
  <entry><title>Kopi</title><id>urn:kopi</id><updated>2024-05-20T14:00:00Z</updated>
    <link href="{base}/ekonomi/festival-kopi-nusantara-makassar"/></entry>
</feed>
"""


def site_config(tmp_path: Path, web: FakeWeb, **sources) -> Config:
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    values = {"delay_seconds": 0, "timeout_seconds": 1, "allow_private_networks": True}
    values.update(sources)
    return make_config(corpus, tmp_path / "index" / ".index", sources=values)


def stored(config: Config) -> list[Path]:
    return sorted(config.sources_path.rglob("*.md"))


def config_file(tmp_path: Path, feeds: list[str] = ()) -> Path:
    (tmp_path / "corpus").mkdir(exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(
        "sources: {delay_seconds: 0, allow_private_networks: true, "
        f"feeds: {json.dumps(list(feeds))}}}\n",
        "utf-8",
    )
    return path


def tanya_add(capsys, config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), "--no-reindex", "--quiet", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --feed, --list-feeds, --unfollow


def test_following_a_feed_reads_it_now_and_then_with_the_others(tmp_path, web):
    config = site_config(tmp_path, web)
    feed = web.url("/feed.xml")
    report = ingest(config, follow_feeds=[feed], run_reindex=False)
    assert report.followed == (feed,) and report.feed_problems == ()
    assert {o.url for o in report.outcomes if o.status == "added"} == {
        web.url(ARTICLE),
        web.url(TWO_PARTS),
    }
    assert [f.url for f in followed_feeds(config)] == [feed]
    assert followed_feeds(config)[0].title == "Warta Parahyangan - Berita Terkini"
    assert feed_urls(config) == (feed,)
    # Its entries are remembered: reading the feeds again fetches the feed, no page.
    fetched = len(web.hits)
    again = ingest(config, feeds=True, run_reindex=False)
    assert again.outcomes == () and again.followed == ()
    assert [h.path for h in web.hits[fetched:]] == ["/robots.txt", "/feed.xml"]


def test_the_command_follows_lists_and_unfollows_without_touching_the_config(tmp_path, web, capsys):
    config = config_file(tmp_path)
    before = config.read_bytes()
    feed = web.url("/feed.xml")
    code, out, err = tanya_add(capsys, config, "--feed", feed)
    assert code == 0, err
    assert f"following {feed}: tanya-add --feeds, /refresh and the bot's timer read it" in out
    assert f"added: {TITLE}" in out
    assert config.read_bytes() == before  # the hand-written config is never rewritten
    assert (tmp_path / "corpus" / "web" / FOLLOWED_FILE).is_file()

    code, out, _ = tanya_add(capsys, config, "--list-feeds")
    assert code == 0
    assert "followed (tanya-add --unfollow URL stops one):" in out
    assert f"  {feed}  Warta Parahyangan - Berita Terkini  since " in out

    code, out, _ = tanya_add(capsys, config, "--feed", feed)
    assert code == 0 and f"already following {feed}" in out

    code, out, _ = tanya_add(capsys, config, "--unfollow", feed)
    assert code == 0 and f"unfollowed {feed} (Warta Parahyangan - Berita Terkini)" in out
    code, out, _ = tanya_add(capsys, config, "--list-feeds")
    assert "no feeds are set up: follow one with tanya-add --feed URL" in out
    code, _, err = tanya_add(capsys, config, "--unfollow", feed)
    assert code == 1 and "is not followed (tanya-add --list-feeds lists the feeds)" in err
    code, _, err = tanya_add(capsys, config, "--feeds")
    assert code == 1 and "no feeds are set up" in err


def test_configured_feeds_are_still_read_and_listed_beside_the_followed(tmp_path, web, capsys):
    web.serve("/atom.xml", Response(body=ATOM.format(base=web.base).encode(),
                                    content_type="application/atom+xml"))  # fmt: skip
    configured = web.url("/feed.xml")
    config = config_file(tmp_path, [configured])
    code, _, err = tanya_add(capsys, config, "--feed", web.url("/atom.xml"))
    assert code == 0, err
    code, out, _ = tanya_add(capsys, config, "--list-feeds")
    assert f"in sources.feeds ({config}):\n  {configured}" in out
    assert web.url("/atom.xml") in out
    loaded = load_config(config, {})
    assert feed_urls(loaded) == (configured, web.url("/atom.xml"))
    code, out, _ = tanya_add(capsys, config, "--feeds")
    assert code == 0
    assert f"added: {TITLE}" in out  # from the configured feed
    state = json.loads((tmp_path / "corpus" / "web" / ".feeds.json").read_text("utf-8"))
    assert set(state["feeds"]) == {configured, web.url("/atom.xml")}
    with pytest.raises(TanyaError, match=r"is in sources.feeds in .*config.yaml: remove it there"):
        unfollow(loaded, configured)


@pytest.mark.parametrize(
    "path, problem",
    [
        (ARTICLE, "not an RSS or Atom feed"),
        ("/hilang.xml", "HTTP 404"),
    ],
)
def test_what_is_no_feed_is_not_followed(tmp_path, web, capsys, path, problem):
    config = config_file(tmp_path)
    code, out, err = tanya_add(capsys, config, "--feed", web.url(path))
    assert code == 1
    assert f"feed {web.url(path)} not read: {problem}" in err
    assert "following" not in out
    assert followed_feeds(load_config(config, {})) == []


def test_a_feed_on_a_private_address_is_not_followed_by_default(tmp_path, web):
    config = site_config(tmp_path, web, allow_private_networks=False)
    report = ingest(config, follow_feeds=[web.url("/feed.xml")], run_reindex=False)
    assert report.followed == () and report.feed_problems[0].kind == "private"
    assert followed_feeds(config) == []


def test_a_damaged_or_hostile_followed_list_is_read_within_bounds(tmp_path, web):
    config = site_config(tmp_path, web)
    path = config.sources_path / FOLLOWED_FILE
    path.parent.mkdir(parents=True)
    good = web.url("/feed.xml")
    feeds = [
        {"url": good, "title": "x" * 10_000},
        {"url": "file:///etc/passwd"},
        {"url": "http://user:secret@example.org/rss"},
        {"url": ["not", "text"]},
        "just a string",
        {"url": good},  # twice
    ]
    path.write_text(json.dumps({"version": 1, "feeds": feeds}), "utf-8")
    (followed,) = followed_feeds(config)
    assert followed.url == good and len(followed.title) == 200
    for damaged in ("{not json", "[1, 2]", '{"feeds": 5}', "[" * 100_000):
        path.write_text(damaged, "utf-8")
        assert followed_feeds(config) == []
    # A list longer than it may be is not read past its first megabyte.
    path.write_text(json.dumps({"feeds": [{"url": good}], "pad": "x" * MAX_FOLLOWED_BYTES}))
    assert followed_feeds(config) == []


# A feed given as a page


@pytest.mark.parametrize(
    "content_type",
    ["application/rss+xml", "application/xml", "text/xml", "text/html; charset=utf-8"],
)
def test_a_feed_given_as_a_page_is_read_once_with_a_hint(tmp_path, web, capsys, content_type):
    web.serve("/rss", Response(body=web.page("feed.xml"), content_type=content_type))
    config = config_file(tmp_path)
    code, out, err = tanya_add(capsys, config, web.url("/rss"))
    assert code == 0, err
    assert f"added: {TITLE}" in out
    hint = (
        f"{web.url('/rss')} is a feed, read once; to follow it: tanya-add --feed {web.url('/rss')}"
    )
    assert [line for line in out.splitlines() if "is a feed" in line] == [hint]
    assert "not an HTML page" not in err
    assert followed_feeds(load_config(config, {})) == []  # read, not followed
    assert not (tmp_path / "corpus" / "web" / ".feeds.json").exists()


def test_feeds_with_an_address_reads_the_address_and_says_how_to_follow_it(tmp_path, web, capsys):
    config = config_file(tmp_path)
    code, out, err = tanya_add(capsys, config, "--feeds", web.url("/feed.xml"))
    assert code == 0, err
    assert "no feeds are set up" not in err
    assert f"to follow it: tanya-add --feed {web.url('/feed.xml')}" in out
    assert f"added: {TITLE}" in out


def test_an_atom_feed_is_recognised_by_its_root_element():
    atom = ATOM.encode()
    assert looks_like_feed(b"\xef\xbb\xbf\n<!-- feed -->\n" + atom)
    assert looks_like_feed(b"<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>")
    assert not looks_like_feed(b"<?xml version='1.0'?><urlset><url/></urlset>")
    assert not looks_like_feed(b"<!DOCTYPE html><html><body><rss></rss></body></html>")
    assert looks_like_feed(b"", "application/atom+xml")  # the type says so outright


def test_other_xml_is_still_no_page(tmp_path, web):
    sitemap = b"<?xml version='1.0'?><urlset><url><loc>/a</loc></url></urlset>"
    web.serve("/sitemap.xml", Response(body=sitemap, content_type="application/xml"))
    config = site_config(tmp_path, web)
    report = ingest(config, [web.url("/sitemap.xml")], feed_pages=True, run_reindex=False)
    (outcome,) = report.outcomes
    assert outcome.status == "skipped" and outcome.reason == "not an HTML page (application/xml)"
    assert report.feeds_found == ()


def test_without_feed_pages_a_feed_is_one_skipped_address(tmp_path, web):
    """As the bot's /add has it: one outcome for the one address, saying it is a feed."""
    config = site_config(tmp_path, web)
    report = ingest(config, [web.url("/feed.xml")], run_reindex=False)
    (outcome,) = report.outcomes
    assert outcome.status == "skipped" and outcome.kind == "feed"
    assert outcome.reason == "an RSS or Atom feed, not an article page"
    assert stored(config) == []


# links:


def links_of(path: Path) -> list[str]:
    return read_front_matter(path.read_text("utf-8"))["links"]


def test_every_address_that_led_to_an_article_is_in_its_links(tmp_path, web):
    config = site_config(tmp_path, web)
    ingest(config, [web.url(ARTICLE)], run_reindex=False)
    (path,) = stored(config)
    before = path.read_text("utf-8")
    assert links_of(path) == [web.url(ARTICLE)]
    web.serve(ARTICLE + "?utm_source=wa", web.page("berita.html"))
    # The same story at an address that names no canonical URL: known by its text.
    copy = web.page("berita.html").replace(b'<link rel="canonical"', b'<link rel="alternate"')
    web.serve("/salinan/jembatan", copy)
    wa, salinan = web.url(ARTICLE + "?utm_source=wa"), web.url("/salinan/jembatan")
    report = ingest(config, [wa, salinan], run_reindex=False)
    assert [o.status for o in report.outcomes] == ["unchanged", "unchanged"]
    assert stored(config) == [path]  # not stored twice
    assert links_of(path) == [web.url(ARTICLE), wa, salinan]
    after = path.read_text("utf-8")
    # Only links: changed; the text and every other field are as they were.
    assert after.replace(f"- {wa}\n- {salinan}\n", "") == before
    # Known now by every one of its addresses: asked again, nothing is written.
    mtime = path.stat().st_mtime_ns
    again = ingest(config, [salinan, wa], run_reindex=False)
    assert [o.status for o in again.outcomes] == ["unchanged", "unchanged"]
    assert path.stat().st_mtime_ns == mtime
    (article,) = load_corpus(config.corpus_path).articles
    assert article.url == web.url(ARTICLE)


def test_links_stay_within_their_bound(tmp_path, web):
    config = site_config(tmp_path, web)
    ingest(config, [web.url(ARTICLE)], run_reindex=False)
    variants = [f"{ARTICLE}?utm_source=x{i}" for i in range(MAX_LINKS + 10)]
    for variant in variants:
        web.serve(variant, web.page("berita.html"))
    ingest(config, [web.url(v) for v in variants], run_reindex=False)
    (path,) = stored(config)
    links = links_of(path)
    assert len(links) == MAX_LINKS
    assert links[:2] == [web.url(ARTICLE), web.url(variants[0])]
    assert len(load_corpus(config.corpus_path).articles) == 1  # its front matter still reads
