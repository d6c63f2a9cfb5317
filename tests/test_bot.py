"""The Telegram bot end to end: the real python-telegram-bot Application over HTTP on loopback."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import bot
from chat.telegram.app import build_application, poll, run_bot, serve_webhook
from chat.telegram.logs import protect_token_in_logs
from chat.telegram.messages import MESSAGE_LIMIT
from chat.texts import INDONESIAN
from retrieval.answering.answer import Answerer
from retrieval.config import Config, StateConfig
from retrieval.errors import TanyaError
from retrieval.index.reindex import reindex
from tests.conftest import FakeEmbedder, make_config, with_evidence_floor
from tests.fake_telegram import AppThread, FakeTelegram, html_errors

PASAR_Q = "Berapa harga cabai rawit di Pasar Minggu?"
BOLA_Q = "Siapa pencetak gol Timnas Indonesia melawan Vietnam?"


def telegram_settings(config: Config, fake: FakeTelegram, **values) -> Config:
    """The config pointed at the fake Bot API, with some telegram settings changed."""
    telegram = dataclasses.replace(
        config.telegram, base_url=fake.base_url, base_file_url=fake.base_file_url, **values
    )
    return dataclasses.replace(config, telegram=telegram)


@contextmanager
def running(answerer: Answerer, fake: FakeTelegram, state: Path | None = None, **telegram):
    """The bot built by bot.py, long-polling the fake server until the block ends; its state
    file is `state`, or a new one of its own."""
    config = telegram_settings(answerer.config, fake, **telegram)
    with tempfile.TemporaryDirectory() as folder:
        path = state or Path(folder) / "state.sqlite3"
        config = dataclasses.replace(config, state=StateConfig(path=str(path)))
        app = build_application(config, answerer, fake.token, flood_limits=False)
        with AppThread(app, lambda: poll(app, timeout=1, stop_signals=None)) as thread:
            fake.wait_for(lambda: app.running and fake.calls("getUpdates"))
            yield app
            thread.stop()


@pytest.fixture
def qa(tiny_index: Config, fake_embedder: FakeEmbedder) -> Answerer:
    """The tiny index, declining only weak matches (the fake embedder's cosines are low)."""
    return Answerer(with_evidence_floor(tiny_index, 0.3), embedder=fake_embedder)


@pytest.fixture
def fake():
    with FakeTelegram() as server:
        yield server


def one_reply(fake: FakeTelegram, message: dict, timeout: float = 10.0) -> dict:
    return fake.wait_for(lambda: fake.replies_to(message), timeout)[0]


def settle(fake: FakeTelegram) -> None:
    """Let every injected update be fetched and handled (negative checks wait on this)."""
    fake.wait_for(lambda: fake.pending_updates() == 0)
    time.sleep(0.2)


def test_private_question_gets_quoted_html_reply(qa, fake):
    with running(qa, fake):
        question = fake.message(501, PASAR_Q)
        sent = one_reply(fake, question)
    assert sent["parse_mode"] == "HTML"
    assert sent["reply_parameters"]["message_id"] == question["message_id"]
    assert sent["text"].startswith("<blockquote>")
    # The answer in bold inside its sentence in italics.
    assert "<i>Harga cabai rawit di Pasar Minggu naik menjadi </i><b>Rp80.000" in sent["text"]
    assert "— Harga Cabai Naik di Pasar Minggu, paragraf" in sent["text"]
    assert fake.replies_to(question) == [sent]
    # Start-up: the token was checked, polling cleared any webhook, the menu was registered.
    methods = [r.method for r in fake.requests]
    assert methods.index("getMe") < methods.index("deleteWebhook") < methods.index("getUpdates")
    # The menu: Indonesian by default, and once per language for users whose app speaks it.
    menus = {
        c.params.get("language_code"): c.params["commands"] for c in fake.calls("setMyCommands")
    }
    assert set(menus) == {None, "id", "en"}
    for commands in menus.values():
        assert [c["command"] for c in commands] == ["start", "help", "sources", "ask", "forget"]
    assert menus[None] == menus["id"] != menus["en"]
    assert menus["en"][1]["description"] == "How to ask questions"
    assert menus["id"][1]["description"] == "Cara bertanya"
    assert not [r for r in fake.requests if r.status == 404]


def test_declined_question_gets_closest_passage_labelled(qa, fake):
    question_text = "Bagaimana cuaca di Surabaya besok?"
    assert qa.ask(question_text).declined
    with running(qa, fake):
        text = one_reply(fake, fake.message(503, question_text))["text"]
    # An Indonesian question is declined in Indonesian (English questions: test_languages.py).
    assert text.startswith("Maaf, artikel-artikel ini tampaknya tidak membahas pertanyaan")
    assert "(<i>bukan jawaban</i>):\n<blockquote>" in text


def test_start_help_and_sources(qa, fake):
    with running(qa, fake):
        # A user whose Telegram speaks English (others get Indonesian: test_languages.py).
        start = fake.message(502, "/start", language_code="en")
        help_ = fake.message(502, "/help", language_code="en")
        sources = fake.message(502, "/sources", language_code="en-GB")
        start_parts = fake.wait_for(
            lambda: len(fake.replies_to(start)) == 2 and fake.replies_to(start)
        )
        help_text = one_reply(fake, help_)["text"]
        sources_text = one_reply(fake, sources)["text"]
    start_text = start_parts[0]["text"]
    assert "exact passages" in start_text
    assert "Harga Cabai Naik di Pasar Minggu" in start_text
    assert "/ask" in help_text and "/sources" in help_text
    assert "3 articles indexed" in sources_text
    assert '<a href="https://example.org/banjir">Banjir Rendam Ratusan Rumah di Bekasi</a>' in (
        sources_text
    )
    assert "Timnas Indonesia Menang atas Vietnam" in sources_text


def test_group_answers_only_ask_mentions_and_replies_to_itself(qa, fake):
    group = -1001
    with running(qa, fake):
        chatter = fake.message(group, PASAR_Q, user_id=7, chat_type="supergroup")
        other_bot = fake.message(group, f"/ask@other_bot {PASAR_Q}", user_id=7, chat_type="group")
        other_mention = fake.message(group, f"@someone {PASAR_Q}", user_id=7, chat_type="group")
        reply_to_user = fake.message(group, PASAR_Q, user_id=8, chat_type="group", reply_to=chatter)
        ask = fake.message(group, f"/ask {PASAR_Q}", user_id=7, chat_type="group")
        ask_addressed = fake.message(
            group, f"/ask@tanya_test_bot {BOLA_Q}", user_id=9, chat_type="group"
        )
        mention = fake.message(group, f"@tanya_test_bot {BOLA_Q}", user_id=10, chat_type="group")
        answer = one_reply(fake, ask)
        reply_to_bot = fake.message(
            group, BOLA_Q, user_id=11, chat_type="group", reply_to=fake.sent_message(answer)
        )
        bare_ask = fake.message(group, "/ask", user_id=12, chat_type="group")
        for message in (ask_addressed, mention, reply_to_bot, bare_ask):
            one_reply(fake, message)
        settle(fake)
    assert "Rp80.000" in answer["text"]
    for message in (ask_addressed, mention, reply_to_bot):
        assert "Rizky Ridho" in one_reply(fake, message)["text"]
    assert "/ask" in one_reply(fake, bare_ask)["text"]
    for message in (chatter, other_bot, other_mention, reply_to_user):
        assert fake.replies_to(message) == [], message["text"]
    assert len(fake.sent(group)) == 5


def test_allowlist_refuses_others_once_and_logs_them(qa, fake, caplog):
    caplog.set_level(logging.INFO, logger="tanya")
    with running(qa, fake, allowed_chat_ids=(601,)):
        allowed = fake.message(601, PASAR_Q)
        first = fake.message(602, PASAR_Q)
        one_reply(fake, allowed)
        one_reply(fake, first)
        second = fake.message(602, "/start")
        settle(fake)
    assert "Rp80.000" in one_reply(fake, allowed)["text"]
    assert fake.sent(602) == fake.replies_to(first)
    assert "pribadi" in one_reply(fake, first)["text"]  # "private", to an Indonesian question
    assert fake.replies_to(second) == []
    refusals = [r for r in caplog.records if "refused chat 602" in r.getMessage()]
    assert len(refusals) == 2


def test_rate_limit_says_slow_down_once(qa, fake):
    with running(qa, fake, rate_limit_per_minute=2):
        questions = [fake.message(701, f"{PASAR_Q} ({i})") for i in range(4)]
        fake.wait_for(lambda: len(fake.sent(701)) == 3)
        other = fake.message(702, PASAR_Q)
        one_reply(fake, other)
        settle(fake)
    texts = [p["text"] for p in fake.sent(701)]
    assert sum("Rp80.000" in t for t in texts) == 2
    assert sum("Tunggu sebentar" in t for t in texts) == 1  # the questions are Indonesian
    assert len(fake.sent(701)) == 3
    assert sum(len(fake.replies_to(q)) for q in questions) == 3


@pytest.fixture
def html_answerer(tmp_path: Path) -> Answerer:
    """An index of one article whose text holds HTML-like characters."""
    corpus = tmp_path / "html-corpus"
    corpus.mkdir()
    (corpus / "roti.txt").write_text(
        "Toko <b>Roti</b> & Kopi Dibuka\n\n"
        "Toko roti & kopi <b>Murah</b> dibuka di Bandung pada Senin. "
        "Harga roti mulai Rp5.000 <per potong>.\n",
        encoding="utf-8",
    )
    config = make_config(
        corpus, tmp_path / "html-index" / ".index", search={"decline_threshold": 0.2}
    )
    embedder = FakeEmbedder()
    reindex(config, embedder=embedder)
    return Answerer(config, embedder=embedder)


def test_html_in_questions_and_articles_is_escaped(html_answerer, fake):
    with running(html_answerer, fake):
        question = fake.message(801, "<b>&</b> toko roti kopi murah di Bandung?")
        wordless = fake.message(802, "<>&")
        text = one_reply(fake, question)["text"]
        error = one_reply(fake, wordless)["text"]
    assert html_errors(text) == []
    assert "Toko roti &amp; kopi &lt;b&gt;Murah&lt;/b&gt; dibuka" in text
    assert "&lt;per potong&gt;" in text
    assert "— Toko &lt;b&gt;Roti&lt;/b&gt; &amp; Kopi Dibuka, paragraf" in text
    assert "<b>&</b>" not in text
    assert error.startswith("Pertanyaannya tidak berisi kata")


def test_long_reply_is_split_into_valid_html_parts(long_answerer, fake):
    answer = long_answerer.ask("harga cabai bawang pasar induk")
    assert len(answer.quotes) == 3 and all(len(q.text) > MESSAGE_LIMIT for q in answer.quotes)
    with running(long_answerer, fake, max_messages_per_answer=20):
        question = fake.message(901, "harga cabai bawang pasar induk")
        fake.wait_for(lambda: len(fake.replies_to(question)) >= 4)
        settle(fake)
    parts = [p["text"] for p in fake.replies_to(question)]
    assert len(parts) >= 4
    for part in parts:
        assert len(part.encode("utf-16-le")) // 2 <= MESSAGE_LIMIT
        assert html_errors(part) == []
        assert part.startswith("<blockquote>")
    assert all(r.status == 200 for r in fake.calls("sendMessage"))
    joined = "".join(parts)
    assert joined.count("paragraf") == 3
    assert joined.count("Kramat Jati") == 3 * 70


def test_flood_control_and_server_error_still_deliver_exactly_once(qa, fake):
    fake.fail_next("sendMessage", 429, retry_after=1)
    fake.fail_next("sendMessage", 500)
    with running(qa, fake):
        question = fake.message(1001, PASAR_Q)
        one_reply(fake, question)
        settle(fake)
    statuses = [r.status for r in fake.calls("sendMessage")]
    assert statuses == [429, 500, 200]
    attempts = fake.calls("sendMessage")
    assert attempts[1].at - attempts[0].at >= 1.0  # waited as long as Telegram asked
    assert len(fake.replies_to(question)) == 1


def test_follow_up_question_uses_the_chat_history(seed_answerer, fake):
    with running(seed_answerer, fake):
        first = fake.message(1101, "Siapa Presiden Korea Selatan?")
        one_reply(fake, first)
        follow_up = fake.message(1101, "Di mana dia berpidato?")
        alone = fake.message(1102, "Di mana dia berpidato?")
        follow_text = one_reply(fake, follow_up)["text"]
        alone_text = one_reply(fake, alone)["text"]
    assert "Majelis Umum Perserikatan Bangsa-Bangsa" in follow_text.split("</blockquote>")[0]
    assert follow_text != alone_text


def test_each_kind_of_reply_in_telegram(seed_answerer, fake):
    with running(seed_answerer, fake):
        sure = one_reply(fake, fake.message(1201, "Siapa yang berjabat tangan dengan Kim Jong Un?"))
        unsure = one_reply(fake, fake.message(1202, "Apa yang dicari Pyongyang?"))
        declined = one_reply(fake, fake.message(1203, "Berapa kurs dolar hari ini?"))
    assert "<b>Sergei Shoigu</b>" in sure["text"]
    assert unsure["text"].startswith(INDONESIAN.tg_passage)
    assert "<b>" not in unsure["text"] and "<i>" in unsure["text"]
    assert declined["text"].startswith(INDONESIAN.tg_decline)
    assert "<b>" not in declined["text"]


def test_a_follow_up_says_how_it_was_read(seed_answerer, fake):
    with running(seed_answerer, fake):
        one_reply(fake, fake.message(1301, "Siapa yang berjabat tangan dengan Kim?"))
        follow = one_reply(fake, fake.message(1301, "Apa jabatannya?"))
    assert follow["text"].startswith("<i>(dibaca sebagai: Apa jabatan Sergei Shoigu?)</i>")
    assert "Menteri Pertahanan Rusia" in follow["text"]


class TroubleEmbedder(FakeEmbedder):
    """The fake embedder, but "meledak" makes it fail and "lambat" makes it slow."""

    def encode_queries(self, texts):
        if any("meledak" in t for t in texts):
            raise RuntimeError("the encoder exploded")
        if any("lambat" in t for t in texts):
            time.sleep(1.5)
        return super().encode_queries(texts)


@pytest.fixture
def trouble_answerer(tiny_index: Config) -> Answerer:
    return Answerer(with_evidence_floor(tiny_index, 0.3), embedder=TroubleEmbedder())


def test_error_is_logged_apologised_for_and_the_bot_goes_on(trouble_answerer, fake, caplog):
    caplog.set_level(logging.ERROR, logger="tanya")
    with running(trouble_answerer, fake):
        boom = fake.message(1201, "harga cabai meledak?")
        apology = one_reply(fake, boom)["text"]
        after = fake.message(1201, PASAR_Q)
        after_text = one_reply(fake, after)["text"]
    assert "terjadi kesalahan" in apology  # the question was Indonesian
    assert "Rp80.000" in after_text
    (record,) = [r for r in caplog.records if "failed" in r.getMessage()]
    assert record.getMessage().startswith("update ")
    assert "the encoder exploded" in caplog.text  # the traceback


def test_slow_question_does_not_hold_up_other_chats(trouble_answerer, fake):
    with running(trouble_answerer, fake):
        slow = fake.message(1301, "harga cabai lambat?")
        fast = fake.message(1302, PASAR_Q)
        fast_reply = one_reply(fake, fast)
        assert fake.replies_to(slow) == []  # answered while the slow one still runs
        one_reply(fake, slow)
    (typing,) = fake.calls("sendChatAction")
    assert int(typing.params["chat_id"]) == 1301 and typing.params["action"] == "typing"
    assert "Rp80.000" in fast_reply["text"]


def test_load_every_question_answered_exactly_once(qa, fake):
    questions = [PASAR_Q, BOLA_Q, "Di mana banjir terjadi?", "Apa kata pedagang?", "Skor berapa?"]
    with running(qa, fake):
        sent = [fake.message(2000 + c, q) for c in range(50) for q in questions]
        fake.wait_for(lambda: len(fake.sent()) >= len(sent), timeout=60)
        settle(fake)
    assert len(fake.sent()) == len(sent) == 250
    for message in sent:
        assert len(fake.replies_to(message)) == 1


def test_rebuilt_index_is_served_without_restart(tiny_index, fake):
    embedder = FakeEmbedder()
    answerer = Answerer(tiny_index, embedder=embedder)
    before = answerer.index.version
    with running(answerer, fake, reload_check_seconds=0.1):
        (tiny_index.corpus_path / "gempa.txt").write_text(
            "Gempa Guncang Cianjur\n\n"
            "Gempa bermagnitudo 5,6 mengguncang Cianjur pada Senin siang.\n",
            encoding="utf-8",
        )
        reindex(tiny_index, embedder=FakeEmbedder())
        fake.wait_for(lambda: answerer.index.version != before)
        question = fake.message(1401, "Berapa magnitudo gempa di Cianjur?")
        text = one_reply(fake, question)["text"]
    assert "— Gempa Guncang Cianjur, paragraf" in text


def test_missing_index_is_reported_once_and_the_old_one_keeps_serving(tiny_index, fake, caplog):
    answerer = Answerer(tiny_index, embedder=FakeEmbedder())
    with running(answerer, fake, reload_check_seconds=0.05):
        tiny_index.index_path.unlink()  # someone removed the live index link
        time.sleep(0.6)  # about a dozen checks
        text = one_reply(fake, fake.message(1402, PASAR_Q))["text"]
    assert "Rp80.000" in text
    reports = [r for r in caplog.records if "cannot load the index" in r.getMessage()]
    assert len(reports) == 1
    assert "there is no index at" in reports[0].getMessage()


def test_webhook_mode_receives_updates_with_the_secret(qa, fake):
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}/tanya-hook"
    config = telegram_settings(
        qa.config, fake, webhook_url=url, webhook_listen="127.0.0.1", webhook_port=port
    )
    app = build_application(config, qa, fake.token, flood_limits=False)
    with AppThread(app, lambda: serve_webhook(app, config, stop_signals=None)) as thread:
        (hook,) = fake.wait_for(lambda: app.running and fake.calls("setWebhook"))
        assert hook.params["url"] == url
        secret = hook.params["secret_token"]
        update = {
            "update_id": 77,
            "message": {
                "message_id": 5,
                "date": int(time.time()),
                "chat": {"id": 1501, "type": "private", "first_name": "U"},
                "from": {"id": 1501, "is_bot": False, "first_name": "U"},
                "text": PASAR_Q,
            },
        }
        forged = httpx.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
        assert forged.status_code == 403
        ok = httpx.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret})
        assert ok.status_code == 200
        sent = fake.wait_for(lambda: fake.sent(1501))
        thread.stop()
    assert len(sent) == 1 and "Rp80.000" in sent[0]["text"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_token_stays_out_of_the_logs(qa, fake):
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        protect_token_in_logs(fake.token)
        with running(qa, fake):
            one_reply(fake, fake.message(1601, PASAR_Q))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logged = stream.getvalue()
    assert "sendMessage" in logged  # PTB's debug lines were there to leak it
    assert fake.token not in logged
    assert fake.token.split(":")[1] not in logged


def test_bot_without_token_points_to_console_mode(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text("log_level: WARNING\n", encoding="utf-8")
    assert bot.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "TELEGRAM_BOT_TOKEN" in err and "--console" in err


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "987654321",
        "987654321:short",
        "abc:" + "A" * 35,  # the id is digits
        "987654321:" + "A" * 34,
        "987654321:" + "A" * 36,
        "987654321:" + "A" * 34 + "!",
        "987654321:" + "A" * 34 + "А",  # a Cyrillic A
        "'987654321:" + "A" * 35 + "'",  # copied with its quotes
    ],
)
def test_a_malformed_token_is_refused_before_any_network_call(token, tmp_path, monkeypatch, capsys):
    fake = FakeTelegram().start()
    try:
        config = tmp_path / "config.yaml"
        config.write_text(f"telegram: {{base_url: '{fake.base_url}'}}\n", encoding="utf-8")
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
        started = time.monotonic()
        assert bot.main(["--config", str(config)]) == 2
        assert time.monotonic() - started < 5
        assert fake.calls("getMe") == []
    finally:
        fake.stop()
    err = capsys.readouterr().err
    assert "TELEGRAM_BOT_TOKEN does not look like a bot token" in err and "BotFather" in err
    assert token not in err


def test_a_token_of_the_right_shape_passes_the_check():
    assert bot.token_problem("987654321:AAE" + "x" * 30 + "-_") == ""
    assert bot.token_problem(FakeTelegram().token) == ""


def test_a_wrong_token_stops_start_up_with_a_clear_error(qa, fake):
    import asyncio

    config = telegram_settings(qa.config, fake)
    asyncio.set_event_loop(asyncio.new_event_loop())  # run_polling runs on (and closes) it
    try:
        with pytest.raises(
            TanyaError, match="rejected the bot's token.*TELEGRAM_BOT_TOKEN"
        ) as info:
            run_bot(config, qa, "999:wrong-secret")
    finally:
        asyncio.set_event_loop(None)
    assert "wrong-secret" not in str(info.value)
    assert [r.status for r in fake.calls("getMe")] == [401]
