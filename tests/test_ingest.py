"""tanya-add: real pages and a feed from a news site on 127.0.0.1 into the corpus, then asked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval.config import Config
from retrieval.corpus.articles import load_corpus
from retrieval.errors import ReindexLockedError
from retrieval.index.reindex import reindex_lock
from retrieval.web.ingest import STATE_FILE, Fetcher, ingest, read_front_matter
from tests.conftest import ROOT, FakeEmbedder, make_config
from tests.fake_web import (
    ARTICLE,
    TWO_PARTS,
    FakeWeb,
    Response,
    web_fixture,  # noqa: F401 - the `web` fixture
)

# Everything on the article page that is not the article.
FURNITURE = (
    "Indeks Berita",  # navigation
    "Ekonomi",
    "IKLAN",  # advertisements
    "Tarif Parkir",  # the read-also box
    "Baca juga",
    "Terpopuler",  # the sidebar
    "Persib",
    "Hak cipta",  # the footer
    "Pedoman Media Siber",
    "Bagikan",  # share buttons
    "Beranda",  # breadcrumb
)


def site_config(tmp_path: Path, web: FakeWeb, **sources) -> Config:
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    values = {"delay_seconds": 0, "timeout_seconds": 1, "feeds": [web.url("/feed.xml")]}
    values["allow_private_networks"] = True  # the site is on 127.0.0.1
    values.update(sources)
    return make_config(corpus, tmp_path / "index" / ".index", sources=values)


def stored(config: Config) -> list[Path]:
    """The article files tanya-add wrote."""
    return sorted(config.sources_path.rglob("*.md"))


def test_only_the_article_lands_in_the_corpus_with_its_front_matter(tmp_path, web):
    config = site_config(tmp_path, web)
    report = ingest(config, [web.url(ARTICLE)], run_reindex=False)
    assert report.summary == "1 added, 0 updated, 0 unchanged, 0 skipped"
    (path,) = stored(config)
    assert path.parent.parent == config.corpus_path / "web"
    text = path.read_text("utf-8")
    for furniture in FURNITURE:
        assert furniture not in text, furniture
    meta = read_front_matter(text)
    assert meta["url"] == web.url(ARTICLE)  # the canonical URL
    assert meta["source"] == "Warta Parahyangan"
    assert meta["published"] == "2024-03-12"
    assert meta["author"] == "Rina Kusumawati"
    assert meta["language"] == "id"
    (article,) = load_corpus(config.corpus_path).articles
    assert article.title == "Jembatan Layang Kiaracondong Resmi Dibuka untuk Umum"
    assert article.url == web.url(ARTICLE)
    assert article.source == "Warta Parahyangan" and article.published == "2024-03-12"
    paragraphs = [article.paragraph_text(p) for p in article.paragraphs]
    # The photo caption comes first, marked as a caption by its credit (docs/architecture.md).
    assert paragraphs[0].startswith("Kendaraan melintas di jembatan layang Kiaracondong")
    assert article.paragraphs[0].kind == "caption"
    assert paragraphs[1].startswith("BANDUNG – Wali Kota Bandung Sutrisna Wijaya")
    assert paragraphs[-1].endswith("antrean panjang di perlintasan.")
    assert len(paragraphs) == 6
    assert all(h.user_agent.startswith("tanya/") for h in web.hits)


def test_an_article_in_two_parts_is_stored_as_one(tmp_path, web):
    config = site_config(tmp_path, web)
    report = ingest(config, [web.url(TWO_PARTS)], run_reindex=False)
    assert report.count("added") == 1
    (article,) = load_corpus(config.corpus_path).articles
    text = article.text
    assert "Lapangan Karebosi" in text  # part 1
    assert "Rp 3,4 miliar" in text and "lelang kopi spesial" in text  # part 2
    assert text.count("Festival Kopi Nusantara Digelar di Makassar") == 1
    for furniture in ("Halaman", "Selanjutnya", "Baca juga", "Harga Kopi Dunia", "Tentang Kami"):
        assert furniture not in text, furniture
    assert article.url == web.url(TWO_PARTS)
    assert len(web.requests_for(TWO_PARTS + "?page=2")) == 1


def test_each_bad_page_is_reported_with_its_reason_and_the_rest_go_on(tmp_path, web):
    config = site_config(tmp_path, web, timeout_seconds=0.5)
    bad = {
        "/indeks": "only 0 words of running text; the page calls itself 'website'",
        "/hilang": "HTTP 404",
        "/rusak": "HTTP 500",
        "/lambat": "no answer within 0.5 s",
        "/putar-a": "redirect loop",
        "/foto.png": "not an HTML page (image/png)",
        "/kosong": "no article text found on the page",
        "/private/rahasia": "robots.txt does not allow tanya",
    }
    urls = [web.url(p) for p in bad] + [web.url(ARTICLE), "ftp://example.org/x", "halaman"]
    started = time.monotonic()
    report = ingest(config, urls, run_reindex=False)
    assert time.monotonic() - started < 3  # the slow page was given up after 0.5 s
    reasons = {o.url: o.reason for o in report.outcomes if o.status == "skipped"}
    for path, reason in bad.items():
        assert reason in reasons[web.url(path)], path
    assert "not an http:// or https:// address" in reasons["ftp://example.org/x"]
    assert "not an http:// or https:// address" in reasons["halaman"]
    assert report.summary == "1 added, 0 updated, 0 unchanged, 10 skipped"
    assert len(stored(config)) == 1
    leftovers = [p for p in config.corpus_path.rglob("*") if p.is_file() and p.suffix != ".md"]
    assert leftovers == []


def test_a_page_over_the_size_limit_is_skipped_whether_or_not_it_says_its_size(tmp_path, web):
    config = site_config(tmp_path, web, max_page_mb=0.05)
    page = web.page("berita.html").replace(b"</body>", b"<p>" + b"kata " * 20_000 + b"</p></body>")
    web.serve("/besar", page)
    web.serve("/besar-tanpa-ukuran", Response(body=page, length=False))
    report = ingest(config, [web.url("/besar"), web.url("/besar-tanpa-ukuran")], run_reindex=False)
    reasons = [o.reason for o in report.outcomes]
    assert reasons[0].startswith("0.0") and "is over 0.05 MB" in reasons[0]
    assert reasons[1] == "over 0.05 MB"
    assert {o.kind for o in report.outcomes} == {"too_large"}
    assert stored(config) == []


def test_the_same_story_twice_or_through_two_urls_is_stored_once(tmp_path, web):
    config = site_config(tmp_path, web)
    ingest(config, [web.url(ARTICLE)], run_reindex=False)
    # A copy at another address that names no canonical URL: known by its text.
    copy = web.page("berita.html").replace(b'<link rel="canonical"', b'<link rel="alternate"')
    web.serve("/salinan/jembatan", copy)
    again = [web.url(ARTICLE), web.url(ARTICLE + "?utm_source=rss"), web.url("/salinan/jembatan")]
    report = ingest(config, again, run_reindex=False)
    assert [o.status for o in report.outcomes] == ["unchanged"] * 3
    assert len(stored(config)) == 1


@pytest.mark.parametrize("canonical", ["{base}/", "{base}", "http://lain.test/jembatan"])
def test_a_canonical_url_of_the_front_page_or_another_site_is_not_trusted(tmp_path, web, canonical):
    config = site_config(tmp_path, web)
    tag = f'<link rel="canonical" href="{web.url(ARTICLE)}">'.encode()
    named = f'<link rel="canonical" href="{canonical.format(base=web.base)}">'.encode()
    first = web.page("berita.html").replace(tag, named)
    assert first != web.page("berita.html")
    web.serve("/berita/satu", first)
    web.serve("/berita/dua", first.replace(b"Rp 420 miliar", b"Rp 450 miliar"))
    report = ingest(config, [web.url("/berita/satu"), web.url("/berita/dua")], run_reindex=False)
    assert [o.status for o in report.outcomes] == ["added", "added"]
    urls = [read_front_matter(path.read_text("utf-8"))["url"] for path in stored(config)]
    assert sorted(urls) == [web.url("/berita/dua"), web.url("/berita/satu")]


def test_a_changed_article_replaces_its_file_and_is_re_embedded(tmp_path, web):
    config = site_config(tmp_path, web)
    embedder = FakeEmbedder()
    first = ingest(config, [web.url(ARTICLE)], embedder=embedder)
    assert first.reindex.stats.added == 1
    (path,) = stored(config)
    changed = web.page("berita.html").replace(b"Rp 420 miliar", b"Rp 450 miliar")
    web.serve(ARTICLE, changed)
    report = ingest(config, [web.url(ARTICLE)], embedder=embedder)
    assert [o.status for o in report.outcomes] == ["updated"]
    assert stored(config) == [path]
    assert "Rp 450 miliar" in path.read_text("utf-8")
    assert "Rp 420 miliar" not in path.read_text("utf-8")
    assert report.reindex.stats.changed == 1 and report.reindex.stats.embedded > 0


def test_the_old_text_of_an_updated_article_is_no_longer_known(tmp_path, web):
    config = site_config(tmp_path, web)
    ingest(config, [web.url(ARTICLE)], run_reindex=False)
    web.serve(ARTICLE, web.page("berita.html").replace(b"Rp 420 miliar", b"Rp 450 miliar"))
    # The old text at another address that names no canonical URL, later in the same run.
    copy = web.page("berita.html").replace(b'<link rel="canonical"', b'<link rel="alternate"')
    web.serve("/salinan/jembatan", copy)
    report = ingest(config, [web.url(ARTICLE), web.url("/salinan/jembatan")], run_reindex=False)
    assert [o.status for o in report.outcomes] == ["updated", "added"]
    texts = [path.read_text("utf-8") for path in stored(config)]
    assert sorted("Rp 450 miliar" in text for text in texts) == [False, True]


def test_a_page_the_extractor_fails_on_is_skipped_and_the_rest_go_on(tmp_path, web, monkeypatch):
    import trafilatura

    real = trafilatura.bare_extraction

    def failing(html, url, **options):
        if url.endswith("/macet"):
            raise ValueError("lxml tersedak")
        return real(html, url=url, **options)

    monkeypatch.setattr(trafilatura, "bare_extraction", failing)
    web.serve("/macet", web.page("berita.html"))
    config = site_config(tmp_path, web)
    report = ingest(config, [web.url("/macet"), web.url(ARTICLE)], run_reindex=False)
    skipped, added = report.outcomes
    assert skipped.status == "skipped" and skipped.kind == "no_text" and not skipped.transient
    assert skipped.reason == "the page could not be read (ValueError: lxml tersedak)"
    assert added.status == "added"


def test_a_feed_adds_each_new_story_once_and_then_nothing(tmp_path, web):
    config = site_config(tmp_path, web)
    report = ingest(config, feeds=True, run_reindex=False)
    statuses = {o.url.removeprefix(web.base): o.status for o in report.outcomes}
    assert statuses == {
        ARTICLE: "added",
        TWO_PARTS: "added",
        ARTICLE + "?utm_source=rss": "unchanged",  # a second entry for the same story
        "/indeks": "skipped",
        "/hilang": "skipped",
    }
    assert len(web.requests_for(ARTICLE)) == 1  # the entry listed twice was fetched once
    assert len(stored(config)) == 2
    fetched = len(web.hits)
    again = ingest(config, feeds=True, run_reindex=False)
    assert again.outcomes == ()
    assert [h.path for h in web.hits[fetched:]] == ["/robots.txt", "/feed.xml"]  # no page


def test_a_feed_is_read_at_most_max_per_feed_entries_a_run(tmp_path, web):
    config = site_config(tmp_path, web, max_per_feed=2)
    first = ingest(config, feeds=True, run_reindex=False)
    assert len(first.outcomes) == 2
    second = ingest(config, feeds=True, run_reindex=False)
    assert len(second.outcomes) == 2
    assert not {o.url for o in first.outcomes} & {o.url for o in second.outcomes}


def test_a_feed_that_cannot_be_read_is_reported(tmp_path, web):
    config = site_config(tmp_path, web, feeds=[web.url("/hilang.xml"), web.url(ARTICLE)])
    report = ingest(config, feeds=True, run_reindex=False)
    problems = {p.url.removeprefix(web.base): p.reason for p in report.feed_problems}
    assert problems["/hilang.xml"] == "HTTP 404"
    assert problems[ARTICLE].startswith("not an RSS or Atom feed")


class CrashingFetcher(Fetcher):
    """Dies (as a killed process would) when asked for one page."""

    def __init__(self, config, crash_on: str):
        super().__init__(config)
        self.crash_on = crash_on

    def get(self, url, html=True):
        if url.endswith(self.crash_on):
            raise KeyboardInterrupt
        return super().get(url, html)


def test_a_run_that_stopped_half_way_goes_on_where_it_stopped(tmp_path, web):
    config = site_config(tmp_path, web)
    with pytest.raises(KeyboardInterrupt):
        ingest(config, feeds=True, fetcher=CrashingFetcher(config.sources, TWO_PARTS))
    assert len(stored(config)) == 1  # the first story was finished
    state = json.loads((config.sources_path / STATE_FILE).read_text("utf-8"))
    assert list(state["feeds"][web.url("/feed.xml")]) == [web.url(ARTICLE)]
    # A temporary file of the write that a crash cut short is never read as an article.
    leftover = config.sources_path / "127-0-0-1" / ".sisa.md.999.part"
    leftover.parent.mkdir(exist_ok=True)
    leftover.write_text("---\nurl: setengah", "utf-8")
    assert len(load_corpus(config.corpus_path).articles) == 1
    before = len(web.requests_for(ARTICLE))
    report = ingest(config, feeds=True, embedder=FakeEmbedder())
    assert len(web.requests_for(ARTICLE)) == before  # not fetched again
    assert report.outcomes[0].url == web.url(TWO_PARTS) and report.count("added") == 1
    assert not leftover.exists()
    # The reindex catches up with both, the one written before the crash included.
    assert report.reindex.stats.added == 2


def test_requests_to_one_host_wait_the_configured_delay(tmp_path, web):
    config = site_config(tmp_path, web, delay_seconds=0.3)
    ingest(config, [web.url(ARTICLE), web.url("/hilang")], run_reindex=False)
    times = [h.at for h in web.hits]
    assert [h.path for h in web.hits] == ["/robots.txt", ARTICLE, "/hilang"]  # robots.txt once
    assert all(b - a >= 0.29 for a, b in zip(times, times[1:], strict=False))


def test_robots_crawl_delay_is_honoured(tmp_path, web):
    robots = b"User-agent: tanya\nCrawl-delay: 1\nDisallow:\n"  # whole seconds only
    web.serve("/robots.txt", Response(body=robots, content_type="text/plain"))
    config = site_config(tmp_path, web, delay_seconds=0)
    ingest(config, [web.url(ARTICLE), web.url("/hilang")], run_reindex=False)
    times = [h.at for h in web.hits]
    assert times[2] - times[1] >= 0.99


def test_a_site_whose_robots_txt_fails_is_left_alone_this_time(tmp_path, web):
    web.serve("/robots.txt", Response(503, b"down"))
    config = site_config(tmp_path, web)
    report = ingest(config, [web.url(ARTICLE)], run_reindex=False)
    (outcome,) = report.outcomes
    assert outcome.reason == "robots.txt could not be read (HTTP 503)" and outcome.transient
    assert web.requests_for(ARTICLE) == []


@pytest.mark.parametrize("length", [True, False])
def test_a_robots_txt_over_512_kib_is_obeyed_as_far_as_it_is_read(tmp_path, web, length):
    robots = b"User-agent: *\nDisallow: /\n" + b"# " + b"x" * 100 + b"\n"
    robots *= 6_000  # 0.6 MB
    web.serve("/robots.txt", Response(body=robots, content_type="text/plain", length=length))
    config = site_config(tmp_path, web)
    report = ingest(config, [web.url(ARTICLE)], run_reindex=False)
    (outcome,) = report.outcomes
    assert outcome.kind == "robots" and "does not allow tanya" in outcome.reason
    assert web.requests_for(ARTICLE) == []


def test_the_line_a_long_robots_txt_is_cut_in_is_not_read(tmp_path, web):
    # Cut after "Disallow: /", the rule would shut the whole site.
    head = b"User-agent: *\n#"
    padding = head + b"x" * (512 * 1024 - len(head) - len(b"\nDisallow: /")) + b"\n"
    robots = padding + b"Disallow: /private/\n"
    assert len(padding) + len(b"Disallow: /") == 512 * 1024
    web.serve("/robots.txt", Response(body=robots, content_type="text/plain"))
    config = site_config(tmp_path, web)
    report = ingest(config, [web.url(ARTICLE)], run_reindex=False)
    assert [o.status for o in report.outcomes] == ["added"]


def test_never_runs_beside_another_reindex_or_ingestion(tmp_path, web):
    config = site_config(tmp_path, web)
    with reindex_lock(config.index_path):
        with pytest.raises(ReindexLockedError, match="another reindex"):
            ingest(config, [web.url(ARTICLE)])
    assert web.hits == [] and stored(config) == []


def test_a_corpus_that_is_one_file_is_refused_with_a_message(tmp_path, web):
    corpus = tmp_path / "articles.jsonl"
    corpus.write_text('{"id": "a", "text": "x"}\n', "utf-8")
    config = make_config(corpus, tmp_path / ".index")
    with pytest.raises(Exception, match="corpus.path .* is a file"):
        ingest(config, [web.url(ARTICLE)])


def test_a_question_about_an_added_article_is_answered(tmp_path, web, real_embedder):
    from retrieval.answering.answer import Answerer

    config = site_config(tmp_path, web)
    report = ingest(config, [web.url(ARTICLE), web.url(TWO_PARTS)], embedder=real_embedder)
    assert report.reindex.swapped
    answerer = Answerer(config, embedder=real_embedder)
    answer = answerer.ask("Berapa biaya pembangunan jembatan layang Kiaracondong?")
    assert not answer.declined
    assert "Rp 420 miliar" in answer.quotes[0].text
    assert answer.quotes[0].url == web.url(ARTICLE)
    part_two = answerer.ask("Berapa nilai transaksi pada hari pertama Festival Kopi Nusantara?")
    assert "Rp 3,4 miliar" in part_two.quotes[0].text


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "retrieval.web.ingest", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_tanya_add_then_the_question_is_answered(tmp_path, web):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "config.yaml").write_text(
        "sources: {delay_seconds: 0, allow_private_networks: true, "
        f"feeds: ['{web.url('/feed.xml')}']}}\n",
        "utf-8",
    )
    result = run_cli(web.url(ARTICLE), web.url("/hilang"), cwd=tmp_path)
    assert result.returncode == 1  # one of the pages asked for could not be added
    assert f"skipped {web.url('/hilang')}: HTTP 404" in result.stderr
    assert "added: Jembatan Layang Kiaracondong Resmi Dibuka untuk Umum" in result.stdout
    assert "1 added, 0 updated, 0 unchanged, 1 skipped" in result.stdout
    assert "index updated: 1 added" in result.stdout
    ask = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bot.py"),
            "--ask",
            "Siapa yang meresmikan jembatan layang Kiaracondong?",
            "--json",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert not answer["declined"]
    assert "Sutrisna Wijaya" in answer["quotes"][0]["text"]
    feeds = run_cli("--feeds", "--no-reindex", cwd=tmp_path)
    assert feeds.returncode == 0, feeds.stderr  # entries skipped in a feed are no failure
    assert "1 added, 0 updated, 2 unchanged, 2 skipped" in feeds.stdout
    assert "index updated" not in feeds.stdout


def test_tanya_add_needs_urls_or_feeds(tmp_path):
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 2 and "give one or more URLs, --feed URL, --feeds" in result.stderr
    no_feeds = run_cli("--feeds", cwd=tmp_path)
    assert no_feeds.returncode == 1 and "no feeds are set up" in no_feeds.stderr
