"""What the bot keeps and offers beyond one reply, end to end over the fake Bot API: inline
answers, 👍/👎 feedback and its export, chat history that survives a restart, /forget, and a
state file that cannot be used."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from chat.feedback import main as feedback_main
from chat.state import StateStore
from chat.texts import ENGLISH, INDONESIAN
from retrieval.answering.answer import Answerer
from retrieval.config import Config
from retrieval.tools.evaluate import load_questions
from tests.conftest import FakeEmbedder, make_config, with_evidence_floor
from tests.fake_telegram import FakeTelegram, html_errors
from tests.test_bot import BOLA_Q, PASAR_Q, one_reply, running, settle

FOLLOW_FIRST = "Siapa yang berjabat tangan dengan Kim?"
FOLLOW_UP = "Apa jabatannya?"
READ_AS = "<i>(dibaca sebagai: Apa jabatan Sergei Shoigu?)</i>"


@pytest.fixture
def qa(tiny_index: Config, fake_embedder: FakeEmbedder) -> Answerer:
    return Answerer(with_evidence_floor(tiny_index, 0.3), embedder=fake_embedder)


@pytest.fixture
def fake():
    with FakeTelegram() as server:
        yield server


def buttons(sent: dict) -> list[dict]:
    """The inline keyboard's buttons under a sent message, in order."""
    markup = sent.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def votes(path: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT user_id, vote FROM votes ORDER BY user_id").fetchall()


def inline_answer(fake: FakeTelegram, query_id: str, timeout: float = 10.0) -> dict:
    return fake.wait_for(lambda: fake.answered("answerInlineQuery", query_id), timeout)[0]


# Inline mode


def test_inline_query_gets_the_answer_as_one_result(qa, fake):
    with running(qa, fake, inline_cache_seconds=7):
        query = fake.inline_query(501, PASAR_Q)
        answered = inline_answer(fake, query)
    (result,) = answered["results"]
    assert result["type"] == "article"
    assert result["title"].startswith("Jawaban: Rp80.000")
    assert "Harga cabai rawit" in result["description"]
    assert "— Harga Cabai Naik di Pasar Minggu, paragraf 1" in result["description"]
    content = result["input_message_content"]
    assert content["parse_mode"] == "HTML"
    assert "<b>Rp80.000" in content["message_text"]
    assert "— Harga Cabai Naik di Pasar Minggu, paragraf" in content["message_text"]
    assert html_errors(content["message_text"]) == []
    assert int(answered["cache_time"]) == 7
    # Without an allowlist the same answer may be shown to anyone who asks the same.
    assert answered.get("is_personal") in (None, False, "False", "false")


def test_inline_mode_follows_the_allowlist_and_the_rate_limit(qa, fake, caplog):
    caplog.set_level(logging.INFO, logger="tanya")
    with running(qa, fake, allowed_chat_ids=(601,), rate_limit_per_minute=1):
        stranger = fake.inline_query(602, PASAR_Q)
        refused = inline_answer(fake, stranger)
        # Typed on: only the latest query of a burst is answered (and counted).
        typing = [fake.inline_query(601, BOLA_Q[:n]) for n in (10, 25)]
        latest = fake.inline_query(601, BOLA_Q)
        allowed = inline_answer(fake, latest)
        settle(fake)
        again = fake.inline_query(601, PASAR_Q)
        limited = inline_answer(fake, again)
    assert refused["results"] == [] and refused["is_personal"] in (True, "True", "true")
    assert "refused inline query from user 602" in caplog.text
    assert all(fake.answered("answerInlineQuery", q) == [] for q in typing)
    (result,) = allowed["results"]
    assert "Rizky Ridho" in result["input_message_content"]["message_text"]
    # With an allowlist, Telegram must not hand a cached answer to someone else.
    assert allowed["is_personal"] in (True, "True", "true")
    assert limited["results"] == []


# Feedback


def test_a_vote_is_stored_once_per_user_and_a_second_tap_changes_it(qa, fake, tmp_path):
    state = tmp_path / "state.sqlite3"
    with running(qa, fake, state=state):
        question = fake.message(701, PASAR_Q)
        sent = one_reply(fake, question)
        up, down = buttons(sent)
        assert (up["text"], down["text"]) == ("👍", "👎")
        first = fake.press(sent, down["callback_data"], user_id=701)
        saved = fake.wait_for(lambda: fake.answered("answerCallbackQuery", first))[0]
        assert votes(state) == [(701, -1)]
        second = fake.press(sent, up["callback_data"], user_id=701)
        changed = fake.wait_for(lambda: fake.answered("answerCallbackQuery", second))[0]
        other = fake.press(sent, down["callback_data"], user_id=702, language_code="en")
        english = fake.wait_for(lambda: fake.answered("answerCallbackQuery", other))[0]
        forged = fake.press(sent, "vote:99999:down", user_id=701)
        unknown = fake.wait_for(lambda: fake.answered("answerCallbackQuery", forged))[0]
    assert saved["text"] == INDONESIAN.vote_saved
    assert changed["text"] == INDONESIAN.vote_changed
    assert english["text"] == ENGLISH.vote_saved
    assert unknown["text"] == INDONESIAN.vote_unavailable
    assert votes(state) == [(701, 1), (702, -1)]
    with sqlite3.connect(state) as db:
        (row,) = db.execute("SELECT question, read_as, kind, answer, quotes FROM answers")
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert row[:3] == (PASAR_Q, PASAR_Q, "answer")
    assert row[3].startswith("Rp80.000")
    quotes = json.loads(row[4])
    assert quotes[0]["title"] == "Harga Cabai Naik di Pasar Minggu"
    assert row[3] == quotes[0]["answer"] and quotes[0]["answer"] in quotes[0]["text"]


def test_only_the_last_part_of_a_long_answer_has_the_buttons(long_answerer, fake):
    with running(long_answerer, fake, max_messages_per_answer=20):
        question = fake.message(702, "harga cabai bawang pasar induk")
        fake.wait_for(lambda: len(fake.replies_to(question)) >= 4)
        settle(fake)
    parts = fake.replies_to(question)
    assert [bool(buttons(p)) for p in parts] == [False] * (len(parts) - 1) + [True]


def test_feedback_export_writes_a_question_file_the_evaluation_reads(qa, fake, tmp_path, capsys):
    state = tmp_path / "state" / "tanya.sqlite3"
    with running(qa, fake, state=state):
        liked = one_reply(fake, fake.message(801, PASAR_Q))
        disliked = one_reply(fake, fake.message(801, BOLA_Q))
        first = fake.press(liked, buttons(liked)[0]["callback_data"], user_id=801)
        second = fake.press(disliked, buttons(disliked)[1]["callback_data"], user_id=801)
        for query in (first, second):
            fake.wait_for(lambda q=query: fake.answered("answerCallbackQuery", q))
    config = tmp_path / "config.yaml"
    config.write_text(f"state:\n  path: {state}\n", encoding="utf-8")
    target = tmp_path / "review.jsonl"
    assert feedback_main(["--config", str(config), "export", str(target)]) == 0
    assert "1 question voted down written to" in capsys.readouterr().out
    (question,) = load_questions(target)
    assert question.question == BOLA_Q
    assert question.answers == ()  # "decline" until a reviewer writes the right span
    record = json.loads(target.read_text(encoding="utf-8"))
    assert record["review"]["votes"] == {"up": 0, "down": 1}
    assert "Rizky Ridho" in record["review"]["answered"]
    # No state file yet: a clear message, no traceback.
    config.write_text(f"state:\n  path: {tmp_path / 'none.sqlite3'}\n", encoding="utf-8")
    assert feedback_main(["export", str(target), "--config", str(config)]) == 1
    assert "no state database" in capsys.readouterr().err


# History


@pytest.mark.parametrize("history_minutes", [60.0, 0.0])
def test_a_follow_up_survives_a_restart_and_forget_clears_it(
    seed_answerer, fake, tmp_path, history_minutes
):
    state = tmp_path / "state.sqlite3"
    with running(seed_answerer, fake, state=state, history_minutes=history_minutes):
        one_reply(fake, fake.message(901, FOLLOW_FIRST))
    # A new Application, as after a deploy, on the same file.
    with running(seed_answerer, fake, state=state, history_minutes=history_minutes):
        follow = one_reply(fake, fake.message(901, FOLLOW_UP))
        other_chat = one_reply(fake, fake.message(902, FOLLOW_UP))
        forgotten = one_reply(fake, fake.message(901, "/forget"))
        after = one_reply(fake, fake.message(901, FOLLOW_UP))
    assert follow["text"].startswith(READ_AS)
    assert "Menteri Pertahanan Rusia" in follow["text"]
    assert not other_chat["text"].startswith(READ_AS)
    assert forgotten["text"] == INDONESIAN.forgotten
    assert not after["text"].startswith(READ_AS)


def test_history_keeps_the_last_turns_and_drops_old_ones(seed_answerer, tmp_path):
    now = [1000.0]
    store = StateStore(tmp_path / "s.sqlite3", 2, history_minutes=10, clock=lambda: now[0])
    assert store.open()
    turns = [seed_answerer.ask(q).turn() for q in (FOLLOW_FIRST, "Kapan Kim ke Rusia?", BOLA_Q)]
    for turn in turns:
        store.record(5, turn)
    assert store.earlier(5) == tuple(turns[1:])
    now[0] += 9 * 60
    store.record(6, turns[0])
    assert store.earlier(5) == tuple(turns[1:])
    now[0] += 2 * 60  # chat 5's turns are now 11 minutes old
    assert store.earlier(5) == ()
    assert store.earlier(6) == (turns[0],)
    store.record(6, turns[1])  # and writing drops them from the file
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT DISTINCT chat_id FROM turns").fetchall() == [(6,)]
    store.forget(6)
    assert store.earlier(6) == ()
    store.close()


# A state file that cannot be used


def corrupt(path: Path) -> Path:
    path.write_bytes(b"this is not an SQLite database, only text " * 100)
    return path


def under_a_file(path: Path) -> Path:
    path.write_text("a file, not a folder", encoding="utf-8")
    return path / "state.sqlite3"


def read_only(path: Path) -> Path:
    store = StateStore(path / "ro" / "state.sqlite3", 5)
    assert store.open()
    store.close()
    (path / "ro" / "state.sqlite3").chmod(0o444)
    (path / "ro").chmod(0o555)
    return path / "ro" / "state.sqlite3"


@pytest.mark.parametrize(
    "make",
    [
        corrupt,
        under_a_file,
        pytest.param(
            read_only,
            marks=pytest.mark.skipif(
                hasattr(os, "geteuid") and os.geteuid() == 0,
                reason="root writes to read-only files",
            ),
        ),
    ],
)
def test_an_unusable_state_file_costs_the_buttons_never_the_answer(
    qa, fake, tmp_path, caplog, make
):
    caplog.set_level(logging.INFO, logger="tanya")
    state = make(tmp_path / "state.sqlite3")
    try:
        with running(qa, fake, state=state):
            first = one_reply(fake, fake.message(1001, PASAR_Q))
            second = one_reply(fake, fake.message(1001, BOLA_Q))
            forgotten = one_reply(fake, fake.message(1001, "/forget"))
    finally:
        if make is read_only:
            state.parent.chmod(0o755)
    assert "Rp80.000" in first["text"] and "Rizky Ridho" in second["text"]
    assert buttons(first) == buttons(second) == []
    assert forgotten["text"] == INDONESIAN.forgotten
    (line,) = [r for r in caplog.records if "state database" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "answering without saved history and feedback" in line.getMessage()


def test_a_locked_state_file_delays_nothing_but_its_own_writes(seed_answerer, fake, tmp_path):
    state = tmp_path / "state.sqlite3"
    with running(seed_answerer, fake, state=state):
        one_reply(fake, fake.message(1101, FOLLOW_FIRST))
        # Another process holds the write lock for good: turns are kept in memory instead.
        holder = sqlite3.connect(state, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            follow = one_reply(fake, fake.message(1101, FOLLOW_UP))
            took = time.monotonic() - started
            again = one_reply(fake, fake.message(1101, "Di kota mana?"))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    assert follow["text"].startswith(READ_AS)
    assert buttons(follow) == []  # the answer could not be stored, so no votes on it
    assert took < 10
    assert "Vladivostok" in again["text"]


# Settings


@pytest.mark.parametrize(
    "text, message",
    [
        ("telegram:\n  history_minutes: -1\n", "telegram.history_minutes"),
        ("telegram:\n  history_minutes: 20000\n", "telegram.history_minutes"),
        ("telegram:\n  inline_cache_seconds: 1.5\n", "telegram.inline_cache_seconds"),
        ("telegram:\n  inline_cache_seconds: 4000\n", "telegram.inline_cache_seconds"),
        ("state:\n  path: ''\n", "state.path"),
        ("state:\n  file: x.sqlite3\n", "unknown setting state.file"),
    ],
)
def test_state_settings_are_validated(tmp_path, text, message):
    from retrieval.config import load_config
    from retrieval.errors import ConfigError

    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(path)


def test_state_path_defaults_beside_the_config(tmp_path):
    from retrieval.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text("telegram:\n  history_minutes: 0\n", encoding="utf-8")
    config = load_config(path)
    assert config.state_path == tmp_path / ".state" / "tanya.sqlite3"
    assert config.telegram.history_minutes == 0 and config.telegram.inline_cache_seconds == 10
    assert Config().state.path == ".state/tanya.sqlite3"


def test_telegram_source_lines_carry_the_front_matter_outlet_and_date(fake, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "gempa.md").write_text(
        "---\nsource: VOA Indonesia\npublished: 2023-08-22\nurl: https://example.org/g\n---\n"
        "# Gempa Guncang Cianjur\n\nGempa bermagnitudo 5,6 mengguncang Cianjur pada Senin.\n",
        encoding="utf-8",
    )
    (corpus / "hujan.txt").write_text(
        "Hujan Deras di Bogor\n\nHujan deras mengguyur Bogor sepanjang Selasa sore.\n",
        encoding="utf-8",
    )
    config = make_config(corpus, tmp_path / "index" / ".index", search={"decline_threshold": 0.2})
    from retrieval.index.reindex import reindex

    embedder = FakeEmbedder()
    reindex(config, embedder=embedder)
    answerer = Answerer(with_evidence_floor(config, 0.2), embedder=embedder)
    with running(answerer, fake):
        gempa = one_reply(fake, fake.message(1201, "Berapa magnitudo gempa di Cianjur?"))
        asked = "What magnitudo did the gempa in Cianjur have?"
        english = one_reply(fake, fake.message(1202, asked))
        hujan = one_reply(fake, fake.message(1203, "Kapan hujan deras di Bogor?"))
    assert (
        '— <a href="https://example.org/g">Gempa Guncang Cianjur, paragraf 1</a>'
        " · VOA Indonesia, 22 Agu 2023"
    ) in gempa["text"]
    assert "paragraph 1</a> · VOA Indonesia, 22 Aug 2023" in english["text"]
    assert "— Hujan Deras di Bogor, paragraf 1\n" in hujan["text"] + "\n"
    assert "·" not in hujan["text"]


def test_after_a_failed_write_the_next_ones_do_not_wait_on_the_lock(seed_answerer, tmp_path):
    store = StateStore(tmp_path / "s.sqlite3", 3)
    assert store.open()
    answer = seed_answerer.ask(FOLLOW_FIRST)
    turn = answer.turn()
    store.record(1, turn)
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        store.record(1, turn)  # waits for the lock, then gives up
        waited = time.monotonic() - started
        started = time.monotonic()
        store.record(1, turn)
        assert store.record_answer(1, 1, answer) is None
        skipped = time.monotonic() - started
        assert store.earlier(1) == (turn,)  # reading still works beside the writer
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert waited >= 0.9
    assert skipped < waited / 2
    store.close()
