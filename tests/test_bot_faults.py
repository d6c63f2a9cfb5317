"""The bot under Bot API faults: a revoked or wrong token, an unreachable server, quiet logs."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from chat.telegram import app as telegram_app
from chat.telegram import handlers
from chat.telegram.app import run_bot
from chat.telegram.logs import QuietLibraryErrors, protect_token_in_crashes, redact
from chat.telegram.messages import MESSAGE_LIMIT
from retrieval.answering.answer import Answerer
from retrieval.config import Config
from retrieval.errors import TanyaError
from tests.conftest import ROOT, FakeEmbedder, with_evidence_floor
from tests.fake_telegram import FakeTelegram, html_errors
from tests.test_bot import PASAR_Q, one_reply, running, telegram_settings

SECRET = FakeTelegram().token.split(":")[1]


@pytest.fixture
def fake():
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def qa(tiny_index: Config, fake_embedder: FakeEmbedder) -> Answerer:
    return Answerer(with_evidence_floor(tiny_index, 0.3), embedder=fake_embedder)


@contextmanager
def captured_logs(level: int = logging.INFO):
    """Everything logged while the block runs, as the bot's stderr would show it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


class BotThread:
    """run_bot in a thread of its own (no signal handlers there), with its outcome."""

    def __init__(self, config: Config, answerer: Answerer, token: str):
        self.error: BaseException | None = None
        self.result: int | None = None
        self.ended_at: float | None = None
        self._thread = threading.Thread(
            target=self._main, args=(config, answerer, token), daemon=True
        )

    def _main(self, config: Config, answerer: Answerer, token: str) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            self.result = run_bot(config, answerer, token, stop_signals=None, flood_limits=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    def start(self) -> BotThread:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the bot still runs after {timeout} s"


def test_redact_replaces_the_token_in_every_form():
    token = "123456:AAbbCCddEEff-_gg"
    text = f"url /bot{token}/getMe, quoted 123456%3AAAbbCCddEEff-_gg, secret AAbbCCddEEff-_gg"
    redacted = redact(text, token)
    assert "AAbbCCddEEff" not in redacted
    assert redacted.count("<token>") == 3
    assert redact("nothing here", "") == "nothing here"


def test_revoked_token_while_polling_stops_the_bot_within_seconds(qa, fake):
    config = telegram_settings(qa.config, fake)
    with captured_logs() as logs:
        runner = BotThread(config, qa, fake.token).start()
        one_reply(fake, fake.message(3001, PASAR_Q))
        fake.revoke()
        revoked_at = time.monotonic()
        runner.join(15)
    assert runner.ended_at - revoked_at < 5
    assert isinstance(runner.error, TanyaError)
    message = str(runner.error)
    assert "stopped accepting the bot's token" in message and "TELEGRAM_BOT_TOKEN" in message
    assert SECRET not in message
    assert "Traceback" not in logs.getvalue()
    assert SECRET not in logs.getvalue()


def test_a_failed_poll_is_logged_once(qa, fake):
    # One line from on_error: PTB sends getUpdates past the rate limiter and its warning.
    with captured_logs(logging.WARNING) as logs, running(qa, fake):
        fake.fail_next("getUpdates", 502)
        fake.wait_for(lambda: [r for r in fake.calls("getUpdates") if r.status == 502])
        one_reply(fake, fake.message(3201, PASAR_Q))  # polling went on
    lines = [
        line
        for line in logs.getvalue().splitlines()
        if "getUpdates" in line or "polling" in line or "Fault" in line
    ]
    assert len(lines) == 1, lines
    assert lines[0] == "Bot API polling error: Fault"


def test_forbidden_polling_is_fatal_too(qa, fake):
    config = telegram_settings(qa.config, fake)
    runner = BotThread(config, qa, fake.token).start()
    fake.wait_for(lambda: fake.calls("getUpdates"))
    fake.fail_always("getUpdates", 403)
    runner.join(15)
    assert isinstance(runner.error, TanyaError)
    assert "getUpdates: Forbidden" in str(runner.error)


def test_unauthorised_reply_is_fatal_but_a_blocked_user_is_not(qa, fake):
    config = telegram_settings(qa.config, fake)
    with captured_logs() as logs:
        runner = BotThread(config, qa, fake.token).start()
        fake.fail_next("sendMessage", 403)  # this user blocked the bot
        blocked = fake.message(3101, PASAR_Q)
        fake.wait_for(lambda: [r for r in fake.calls("sendMessage") if r.status == 403])
        other = fake.message(3102, PASAR_Q)
        assert "Rp80.000" in one_reply(fake, other)["text"]
        assert fake.replies_to(blocked) == []
        fake.fail_next("sendMessage", 401)
        fake.message(3103, PASAR_Q)
        runner.join(15)
    assert isinstance(runner.error, TanyaError)
    assert "sendMessage: Unauthorized" in str(runner.error)
    logged = logs.getvalue()
    assert "cannot reply (Forbidden: bot was blocked by the user)" in logged
    assert "Traceback" not in logged
    # No apology went to the chat that blocked the bot, and none after the token was lost.
    assert [int(r.params["chat_id"]) for r in fake.calls("sendMessage")] == [3101, 3102, 3103]


def test_unreachable_api_says_one_line_per_try_and_no_traceback(qa, monkeypatch):
    monkeypatch.setattr(telegram_app, "BOOTSTRAP_RETRIES", 1)
    config = telegram_settings(qa.config, FakeTelegram())  # never started: nothing listens
    asyncio.set_event_loop(asyncio.new_event_loop())  # run_polling runs on (and closes) it
    try:
        with captured_logs() as logs, pytest.raises(TanyaError, match="cannot reach the Bot API"):
            run_bot(config, qa, "123:unreachable-secret", stop_signals=None)
    finally:
        asyncio.set_event_loop(None)
    logged = logs.getvalue()
    assert "Traceback" not in logged
    tries = [line for line in logged.splitlines() if "Bot API getMe failed" in line]
    assert len(tries) == 2  # the first try and one retry
    assert "unreachable-secret" not in logged


def test_library_tracebacks_only_at_debug():
    record = logging.LogRecord("telegram.ext", logging.ERROR, "x", 1, "it broke", None, None)
    try:
        raise ValueError("bad data")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert QuietLibraryErrors(debug=True).filter(record) and record.exc_info
    assert QuietLibraryErrors(debug=False).filter(record)
    assert record.exc_info is None and record.getMessage() == "it broke (ValueError: bad data)"


def test_crash_tracebacks_are_redacted(capsys, monkeypatch):
    for name in ("excepthook", "unraisablehook"):
        monkeypatch.setattr(sys, name, getattr(sys, name))
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    token = "123456:crash-secret-value"
    protect_token_in_crashes(token)
    try:
        raise RuntimeError(f"GET https://api.telegram.org/bot{token}/getMe failed")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    worker = threading.Thread(target=lambda: 1 / 0 if token else None)
    worker.start()
    worker.join()
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err
    assert "crash-secret-value" not in err and "/bot<token>/getMe" in err


# The bot as a user runs it: `python bot.py` in a process of its own.


def start_bot_process(config_index: Config, fake: FakeTelegram, tmp_path: Path, token: str):
    config = tmp_path / "config.yaml"
    config.write_text(
        f"corpus: {{path: '{config_index.corpus_path}'}}\n"
        f"index: {{path: '{config_index.index_path}'}}\n"
        f"telegram: {{base_url: '{fake.base_url}', base_file_url: '{fake.base_file_url}'}}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "bot.py"), "--config", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_one_clear_last_line(err: str, phrase: str) -> None:
    lines = err.strip().splitlines()
    assert lines[-1].startswith("tanya: the Bot API at ") and phrase in lines[-1], err
    assert "Traceback" not in err and "Event loop is closed" not in err, err
    assert "Task was destroyed" not in err, err
    assert SECRET not in err


def test_process_exits_by_itself_when_the_token_is_revoked(seed_index, fake, tmp_path):
    process = start_bot_process(seed_index, fake, tmp_path, fake.token)
    try:
        fake.wait_for(lambda: fake.calls("getUpdates"), timeout=60)
        fake.revoke()
        revoked_at = time.monotonic()
        _, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert time.monotonic() - revoked_at < 10
    assert process.returncode == 1
    assert_one_clear_last_line(err, "stopped accepting the bot's token")


def test_sigterm_after_the_token_is_revoked_exits_cleanly(seed_index, fake, tmp_path):
    process = start_bot_process(seed_index, fake, tmp_path, fake.token)
    try:
        fake.wait_for(lambda: fake.calls("getUpdates"), timeout=60)
        fake.revoke()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 1
    assert_one_clear_last_line(err, "token")


def test_sigterm_stops_a_healthy_bot_with_exit_code_0(seed_index, fake, tmp_path):
    process = start_bot_process(seed_index, fake, tmp_path, fake.token)
    try:
        fake.wait_for(lambda: fake.calls("getUpdates"), timeout=60)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err and SECRET not in err


def test_wrong_token_at_start_up_is_never_printed(seed_index, fake, tmp_path):
    wrong = "999:wrong-token-secret-part-0123456789a"  # the right shape, which the API refuses
    process = start_bot_process(seed_index, fake, tmp_path, wrong)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1
    assert "wrong-token-secret-part" not in out + err
    assert_one_clear_last_line(err, "rejected the bot's token")


class BrokenBuildAnswerer(Answerer):
    """An Answerer whose rebuilt index always fails to load with an unexpected error."""

    def reload_if_changed(self) -> bool:
        raise EOFError("No data left in file")


def test_a_broken_new_build_is_logged_once_without_traceback(tiny_index, fake):
    answerer = BrokenBuildAnswerer(with_evidence_floor(tiny_index, 0.3), embedder=FakeEmbedder())
    with captured_logs() as logs, running(answerer, fake, reload_check_seconds=0.05):
        time.sleep(0.6)  # about a dozen checks
        text = one_reply(fake, fake.message(3201, PASAR_Q))["text"]
    assert "Rp80.000" in text  # the previous index still serves
    reports = [line for line in logs.getvalue().splitlines() if "cannot load the index" in line]
    assert reports == [
        "cannot load the index (EOFError: No data left in file); still serving the previous one"
    ]
    assert "Traceback" not in logs.getvalue()


@pytest.mark.parametrize("cap", [1, 3])
def test_a_long_answer_is_cut_to_the_message_cap_with_every_source(long_answerer, fake, cap):
    with running(long_answerer, fake, max_messages_per_answer=cap):
        question = fake.message(3301, "harga cabai bawang pasar induk")
        one_reply(fake, question)
        time.sleep(0.5)  # any further part would have come by now
    parts = [p["text"] for p in fake.replies_to(question)]
    assert 1 <= len(parts) <= cap
    joined = "".join(parts)
    assert joined.count("— Laporan Pasar yang Sangat Panjang, paragraf") == 3
    assert "…" in joined
    for part in parts:
        assert html_errors(part) == [] and len(part.encode("utf-16-le")) // 2 <= MESSAGE_LIMIT
        assert len(part) > MESSAGE_LIMIT // 2 or part is parts[-1]  # no tiny parts


def test_slow_formatting_does_not_hold_up_other_chats(qa, fake, monkeypatch):
    real = handlers.answer_messages

    def slow_messages(answer, **kwargs):
        if "lambat" in answer.question:
            time.sleep(1.5)  # blocking, as splitting a huge answer would be
        return real(answer, **kwargs)

    monkeypatch.setattr(handlers, "answer_messages", slow_messages)
    with running(qa, fake):
        slow = fake.message(3401, "harga cabai lambat?")
        time.sleep(0.2)
        fast = fake.message(3402, PASAR_Q)
        one_reply(fake, fast)
        assert fake.replies_to(slow) == []  # answered while the slow one is still formatted
        one_reply(fake, slow)
