"""What the bot logs: errors summed up in one line, and the bot token kept out of every log
line and traceback."""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from urllib.parse import quote

from telegram.error import NetworkError

from chat.telegram.transport import auth_error_in
from retrieval.errors import TanyaError


def error_summary(exc: BaseException) -> str:
    """A TanyaError's own message (written for a user), else the exception's type and message."""
    return str(exc) if isinstance(exc, TanyaError) else f"{type(exc).__name__}: {exc}"


def redact(text: str, token: str) -> str:
    """text with the bot token (whole, URL-quoted, or its secret half alone) as <token>."""
    if not token:
        return text
    secret = token.partition(":")[2]
    for form in (token, quote(token, safe=""), secret):
        if len(form) >= 8:
            text = text.replace(form, "<token>")
    return text


class RedactToken(logging.Filter):
    """Replaces the bot token in log lines and tracebacks (it is part of every API URL)."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message, self.token)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.token)
        return True


class QuietLibraryErrors(logging.Filter):
    """Library tracebacks only at DEBUG; otherwise one line, or none where tanya says it.

    python-telegram-bot logs a traceback for each failure it retries or gives up on. An
    authorisation failure ends the bot with its own clear line, and network failures get one
    line per retry round from tanya, so those library records are dropped; any other library
    error becomes one line with the exception's summary.
    """

    def __init__(self, debug: bool):
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        if self.debug or not record.exc_info:
            return True
        exc = record.exc_info[1]
        if record.name == "asyncio":
            # PTB's polling loop can leave a refused getUpdates unretrieved when a stop signal
            # comes at the same moment; asyncio then reports it when the task is collected.
            return not auth_error_in(exc)
        if not record.name.startswith("telegram"):
            return True
        if auth_error_in(exc) or isinstance(exc, NetworkError):
            return False
        summary = f"{type(exc).__name__}: {exc}" if exc is not None else ""
        record.msg, record.args = f"{record.getMessage()} ({summary})", None
        record.exc_info, record.exc_text = None, None
        return True


def protect_token_in_logs(token: str, debug: bool = True) -> None:
    """Keep the token out of every log handler; httpx logs each request URL at INFO.

    Below DEBUG, library tracebacks are also shortened (QuietLibraryErrors).
    """
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(QuietLibraryErrors(debug))
        handler.addFilter(RedactToken(token))


def protect_token_in_crashes(token: str) -> None:
    """Tracebacks that reach no log handler (a crash, a thread's, an ignored one) redacted too."""

    def write(text: str) -> None:
        if sys.stderr is not None:
            sys.stderr.write(redact(text, token))

    def excepthook(kind, value, tb) -> None:
        write("".join(traceback.format_exception(kind, value, tb)))

    def thread_excepthook(args) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        write(f"Exception in thread {name}:\n")
        write(
            "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        )

    def unraisablehook(unraisable) -> None:
        where = unraisable.err_msg or "Exception ignored in"
        write(f"{where}: {unraisable.object!r}\n")
        kind, value = unraisable.exc_type, unraisable.exc_value
        write("".join(traceback.format_exception(kind, value, unraisable.exc_traceback)))

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    sys.unraisablehook = unraisablehook
