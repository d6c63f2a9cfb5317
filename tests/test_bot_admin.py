"""Admins add articles in Telegram: /add and /refresh against the fake Bot API and a local site."""

from __future__ import annotations

import html
import logging
import threading
import time

import pytest

import retrieval.web.ingest
from chat.texts import ENGLISH, INDONESIAN
from retrieval.answering.answer import Answerer
from retrieval.config import Config
from retrieval.errors import TanyaError
from retrieval.index.reindex import reindex, reindex_lock
from retrieval.web.feeds import follow
from tests.conftest import FakeEmbedder, make_config
from tests.fake_telegram import FakeTelegram
from tests.fake_web import (
    ARTICLE,
    TWO_PARTS,
    FakeWeb,
    web_fixture,  # noqa: F401 - the `web` fixture
)
from tests.test_bot import one_reply, running, settle
from tests.test_ingest import stored

ADMIN = 77
TITLE = "Jembatan Layang Kiaracondong Resmi Dibuka untuk Umum"
QUESTION = "Berapa biaya pembangunan jembatan layang Kiaracondong?"


@pytest.fixture
def fake():
    with FakeTelegram() as server:
        yield server


def admin_config(tiny_corpus, tmp_path, web: FakeWeb, **sources) -> Config:
    values = {"delay_seconds": 0, "timeout_seconds": 1, "feeds": [web.url("/feed.xml")]}
    values["allow_private_networks"] = True  # the site is on 127.0.0.1
    values.update(sources)
    return make_config(
        tiny_corpus,
        tmp_path / "index" / ".index",
        search={"decline_threshold": 0.3},
        telegram={"admin_ids": [ADMIN]},
        sources=values,
    )


@pytest.fixture
def site_qa(tiny_corpus, tmp_path, web) -> Answerer:
    """The tiny corpus, indexed, with the fake site's feed configured and user 77 an admin."""
    config = admin_config(tiny_corpus, tmp_path, web)
    embedder = FakeEmbedder()
    reindex(config, embedder=embedder)
    return Answerer(config, embedder=embedder)


def test_an_admin_adds_an_article_and_it_is_answered_at_once(site_qa, fake, web, caplog):
    caplog.set_level(logging.INFO, logger="tanya")
    with running(site_qa, fake):
        before = one_reply(fake, fake.message(ADMIN, QUESTION))["text"]
        added = one_reply(fake, fake.message(ADMIN, f"/add {web.url(ARTICLE)}"), timeout=30)
        after = one_reply(fake, fake.message(ADMIN, QUESTION))["text"]
        again = one_reply(fake, fake.message(ADMIN, f"/add {web.url(ARTICLE)}"), timeout=30)
    assert "Rp 420 miliar" not in before
    assert added["text"] == INDONESIAN.added.format(title=TITLE)
    assert "Rp 420 miliar" in after  # searchable by the time the reply came
    assert f'<a href="{web.url(ARTICLE)}">{TITLE}, paragraf' in after  # linked to the page
    assert again["text"] == INDONESIAN.unchanged.format(title=TITLE)
    assert len(stored(site_qa.config)) == 1
    assert f"admin {ADMIN}: /add {web.url(ARTICLE)}: added: {TITLE}" in caplog.text
    assert [c.params["action"] for c in fake.calls("sendChatAction")][:1] == ["typing"]


def test_everyone_else_is_refused_and_logged(site_qa, fake, web, caplog):
    caplog.set_level(logging.INFO, logger="tanya")
    with running(site_qa, fake):
        add = one_reply(fake, fake.message(88, f"/add {web.url(ARTICLE)}"))
        refresh = one_reply(fake, fake.message(87, "/refresh", language_code="en"))
        group = one_reply(
            fake, fake.message(-5, f"/add {web.url(ARTICLE)}", user_id=89, chat_type="group")
        )
    assert add["text"] == html.escape(INDONESIAN.admin_only)
    assert refresh["text"] == html.escape(ENGLISH.admin_only)
    assert group["text"] == html.escape(INDONESIAN.admin_only)
    assert web.hits == [] and stored(site_qa.config) == []
    assert "refused /add from user 88 in chat 88: not in telegram.admin_ids" in caplog.text
    assert "refused /refresh from user 87" in caplog.text
    assert "refused /add from user 89 in chat -5" in caplog.text


def test_a_flood_of_refused_commands_is_rate_limited_and_logged_once(site_qa, fake, web, caplog):
    caplog.set_level(logging.INFO, logger="tanya")
    with running(site_qa, fake, rate_limit_per_minute=3):
        for i in range(40):
            fake.message(88, f"/add {web.url(ARTICLE)}?{i}" if i % 2 else "/refresh")
        settle(fake)
        other = one_reply(fake, fake.message(86, "/refresh"))
    assert len(fake.sent(chat_id=88)) == 3  # as many as the questions a minute allows
    assert other["text"] == html.escape(INDONESIAN.admin_only)  # another user is not held up
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused ")]
    assert [r.getMessage().split(" in chat")[0] for r in refusals] == [
        "refused /refresh from user 88",
        "refused /refresh from user 86",
    ]
    assert web.hits == []


def test_add_says_how_to_use_it_and_why_a_page_failed(site_qa, fake, web):
    with running(site_qa, fake):
        usage = one_reply(fake, fake.message(ADMIN, "/add"))
        missing = one_reply(fake, fake.message(ADMIN, f"/add {web.url('/hilang')}"), timeout=30)
        english = fake.message(ADMIN, f"/add {web.url('/indeks')}", language_code="en")
        not_article = one_reply(fake, english, timeout=30)
    assert usage["text"] == INDONESIAN.add_usage
    assert missing["text"] == (
        f"Tidak dapat menambahkan {web.url('/hilang')}: server menjawab HTTP 404."
    )
    assert not_article["text"].startswith(f"Could not add {web.url('/indeks')}: only 0 words")


def test_add_of_a_private_address_says_so_not_robots(tiny_corpus, tmp_path, web, fake):
    config = admin_config(tiny_corpus, tmp_path, web, allow_private_networks=False)
    reindex(config, embedder=FakeEmbedder())
    with running(Answerer(config, embedder=FakeEmbedder()), fake):
        closed = one_reply(fake, fake.message(ADMIN, "/add http://127.0.0.1:1/"), timeout=30)
        english = fake.message(ADMIN, f"/add {web.url(ARTICLE)}", language_code="en")
        site = one_reply(fake, english, timeout=30)
    assert closed["text"] == (
        "Tidak dapat menambahkan http://127.0.0.1:1/: alamat jaringan privat tidak diambil "
        "(private address (127.0.0.1); fetched only with sources.allow_private_networks)."
    )
    assert site["text"].startswith(f"Could not add {web.url(ARTICLE)}: private address (")
    assert "robots" not in closed["text"] + site["text"] and web.hits == []


def test_refresh_reads_the_feeds_now(site_qa, fake, web, caplog):
    caplog.set_level(logging.INFO, logger="tanya")
    with running(site_qa, fake):
        text = one_reply(fake, fake.message(ADMIN, "/refresh", language_code="en"), 30)["text"]
        answer = one_reply(fake, fake.message(ADMIN, "Berapa nilai transaksi festival kopi?"))
    assert text == "Feeds read: 2 added, 0 updated, 1 unchanged, 2 skipped."
    assert "Rp 3,4 miliar" in answer["text"]
    assert f"admin {ADMIN}: /refresh: 2 added" in caplog.text
    assert len(web.requests_for(TWO_PARTS)) == 1


def test_refresh_without_feeds_says_so(tiny_corpus, tmp_path, web, fake):
    config = admin_config(tiny_corpus, tmp_path, web, feeds=[])
    reindex(config, embedder=FakeEmbedder())
    with running(Answerer(config, embedder=FakeEmbedder()), fake):
        text = one_reply(fake, fake.message(ADMIN, "/refresh"))["text"]
    assert text == INDONESIAN.no_feeds


def test_refresh_reads_the_feeds_followed_with_tanya_add(tiny_corpus, tmp_path, web, fake):
    config = admin_config(tiny_corpus, tmp_path, web, feeds=[])
    assert follow(config, web.url("/feed.xml"), "Warta", "2024-05-20")  # as tanya-add --feed
    reindex(config, embedder=FakeEmbedder())
    with running(Answerer(config, embedder=FakeEmbedder()), fake):
        text = one_reply(fake, fake.message(ADMIN, "/refresh", language_code="en"), 30)["text"]
    assert text == "Feeds read: 2 added, 0 updated, 1 unchanged, 2 skipped."


def test_add_of_a_feed_says_it_is_a_feed(site_qa, fake, web):
    with running(site_qa, fake):
        text = one_reply(fake, fake.message(ADMIN, f"/add {web.url('/feed.xml')}"), 30)["text"]
    assert text == (
        f"Tidak dapat menambahkan {web.url('/feed.xml')}: feed RSS atau Atom, bukan halaman "
        "artikel."
    )


def test_feeds_are_read_on_a_timer(tiny_corpus, tmp_path, web, fake):
    config = admin_config(tiny_corpus, tmp_path, web, refresh_minutes=0.01)  # 0.6 s
    embedder = FakeEmbedder()
    reindex(config, embedder=embedder)
    answerer = Answerer(config, embedder=embedder)
    before = answerer.index.version
    with running(answerer, fake):
        fake.wait_for(lambda: answerer.index.version != before, timeout=30)
        time.sleep(1.5)  # two more rounds: only the feed is read again
        answer = one_reply(fake, fake.message(5, QUESTION))["text"]
    assert "Rp 420 miliar" in answer
    assert len(web.requests_for("/feed.xml")) >= 2
    assert len(web.requests_for(ARTICLE)) == 1


def test_a_feed_followed_while_the_bot_runs_is_read_on_the_timer(tiny_corpus, tmp_path, web, fake):
    config = admin_config(tiny_corpus, tmp_path, web, feeds=[], refresh_minutes=0.01)  # 0.6 s
    embedder = FakeEmbedder()
    reindex(config, embedder=embedder)
    answerer = Answerer(config, embedder=embedder)
    before = answerer.index.version
    with running(answerer, fake):
        time.sleep(1.5)  # rounds with no feed to read fetch nothing
        assert web.hits == []
        assert follow(config, web.url("/feed.xml"), "Warta", "2024-05-20")  # tanya-add --feed
        fake.wait_for(lambda: answerer.index.version != before, timeout=30)
        answer = one_reply(fake, fake.message(5, QUESTION))["text"]
    assert "Rp 420 miliar" in answer


def test_add_while_another_reindex_runs_says_try_again(site_qa, fake, web):
    with running(site_qa, fake), reindex_lock(site_qa.config.index_path):
        text = one_reply(fake, fake.message(ADMIN, f"/add {web.url(ARTICLE)}"), 30)["text"]
        settle(fake)
    assert text == INDONESIAN.busy
    assert web.hits == []


def test_a_chat_outside_the_allowlist_gets_the_usual_refusal(site_qa, fake, web):
    with running(site_qa, fake, allowed_chat_ids=(1,)):
        text = one_reply(fake, fake.message(ADMIN, f"/add {web.url(ARTICLE)}"))["text"]
    assert text == INDONESIAN.refusal
    assert web.hits == []


def test_add_during_a_refresh_says_try_again_at_once(site_qa, fake, web, monkeypatch):
    # Before, /add waited silently for the whole refresh; only another process's reindex
    # got the "busy" reply.
    started, release = threading.Event(), threading.Event()
    real_ingest = retrieval.web.ingest.ingest

    def slow_ingest(*args, **kwargs):
        started.set()
        release.wait(30)
        return real_ingest(*args, **kwargs)

    monkeypatch.setattr(retrieval.web.ingest, "ingest", slow_ingest)
    try:
        with running(site_qa, fake):
            refresh = fake.message(ADMIN, "/refresh", language_code="en")
            assert started.wait(10)
            add = one_reply(fake, fake.message(ADMIN, f"/add {web.url(ARTICLE)}"))
            unanswered = fake.replies_to(refresh)
            release.set()
            refreshed = one_reply(fake, refresh, 30)
    finally:
        release.set()
    assert add["text"] == INDONESIAN.busy
    assert unanswered == []
    assert refreshed["text"] == "Feeds read: 2 added, 0 updated, 1 unchanged, 2 skipped."


def test_a_failed_ingestion_is_told_in_the_admins_language(site_qa, fake, web, monkeypatch, caplog):
    # Before, /refresh answered an Indonesian admin in English.
    caplog.set_level(logging.INFO, logger="tanya")

    def broken_ingest(*args, **kwargs):
        raise TanyaError("the corpus folder /data/corpus cannot be written (Permission denied)")

    monkeypatch.setattr(retrieval.web.ingest, "ingest", broken_ingest)
    url = web.url(ARTICLE)
    with running(site_qa, fake):
        refresh = one_reply(fake, fake.message(ADMIN, "/refresh"))["text"]
        english = one_reply(fake, fake.message(ADMIN, "/refresh", language_code="en"))["text"]
        add = one_reply(fake, fake.message(ADMIN, f"/add {url}"))["text"]
    reason = "the corpus folder /data/corpus cannot be written (Permission denied)"
    assert refresh == INDONESIAN.refresh_failed.format(reason=reason)
    assert refresh.startswith("Tidak dapat membaca feed: the corpus folder")
    assert english == f"Could not read the feeds: {reason}."
    assert add == INDONESIAN.add_failed.format(url=url, reason=reason)
    assert f"admin {ADMIN}: /refresh failed: {reason}" in caplog.text
    assert f"admin {ADMIN}: /add {url} failed: {reason}" in caplog.text
