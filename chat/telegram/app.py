"""The Telegram bot put together: python-telegram-bot's Application with tanya's handlers and
transport, run by long polling or a webhook until stopped."""

from __future__ import annotations

import logging
import secrets
import signal
from collections.abc import Sequence
from urllib.parse import urlparse

from telegram import Update
from telegram.error import NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    InlineQueryHandler,
    MessageHandler,
    filters,
)

from chat.telegram.handlers import TanyaBot
from chat.telegram.logs import protect_token_in_logs, redact
from chat.telegram.transport import (
    FLOOD_RETRIES,
    AuthWatchingRequest,
    RetryingRateLimiter,
    auth_error_in,
)
from retrieval.answering.answer import Answerer
from retrieval.config import Config
from retrieval.errors import TanyaError

log = logging.getLogger("tanya")

TOKEN_ENV = "TELEGRAM_BOT_TOKEN"

# Start-up calls (getMe, deleteWebhook or setWebhook) are retried this many times.
BOOTSTRAP_RETRIES = 5
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGABRT)
# Messages, taps on the feedback buttons, and inline queries (@bot question).
UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.INLINE_QUERY]


def build_application(
    config: Config, answerer: Answerer, token: str, *, flood_limits: bool = True
) -> Application:
    """The python-telegram-bot Application with tanya's handlers, pointed at config's Bot API.

    flood_limits=False drops the client-side pacing to Telegram's message rates (for a fake
    Bot API in tests and benchmarks); 429 answers and network errors are still retried.
    """
    tanya = TanyaBot(config, answerer)
    limits = {} if flood_limits else {"overall_max_rate": 0, "group_max_rate": 0}
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(config.telegram.base_url)
        .base_file_url(config.telegram.base_file_url)
        .concurrent_updates(True)
        # The pool sizes are PTB's defaults: one long poll at a time, many replies at once.
        .request(AuthWatchingRequest(tanya.lose_auth, connection_pool_size=256))
        .get_updates_request(AuthWatchingRequest(tanya.lose_auth, connection_pool_size=1))
        .rate_limiter(RetryingRateLimiter(max_retries=FLOOD_RETRIES, **limits))
        .post_init(tanya.post_init)
        .post_shutdown(tanya.post_shutdown)
        .build()
    )
    messages = filters.UpdateType.MESSAGE
    app.add_handler(CommandHandler("start", tanya.start, filters=messages))
    app.add_handler(CommandHandler("help", tanya.help, filters=messages))
    app.add_handler(CommandHandler("sources", tanya.sources, filters=messages))
    app.add_handler(CommandHandler("ask", tanya.ask_command, filters=messages))
    app.add_handler(CommandHandler("add", tanya.add, filters=messages))
    app.add_handler(CommandHandler("refresh", tanya.refresh, filters=messages))
    app.add_handler(CommandHandler("forget", tanya.forget, filters=messages))
    app.add_handler(CallbackQueryHandler(tanya.vote, pattern=r"^vote:"))
    app.add_handler(InlineQueryHandler(tanya.inline))
    app.add_handler(MessageHandler(messages & filters.TEXT & ~filters.COMMAND, tanya.text))
    app.add_error_handler(tanya.on_error)
    app.bot_data["tanya"] = tanya
    tanya.app = app
    return app


def poll(
    app: Application, *, timeout: float = 10, stop_signals: Sequence[int] | None = STOP_SIGNALS
) -> None:
    """Long-poll the Bot API until stopped (the default mode)."""
    app.run_polling(
        timeout=timeout,
        bootstrap_retries=BOOTSTRAP_RETRIES,
        allowed_updates=UPDATES,
        stop_signals=stop_signals,
    )


def serve_webhook(
    app: Application, config: Config, *, stop_signals: Sequence[int] | None = STOP_SIGNALS
) -> None:
    """Receive updates on config's webhook until stopped."""
    url = config.telegram.webhook_url
    app.run_webhook(
        listen=config.telegram.webhook_listen,
        port=config.telegram.webhook_port,
        url_path=urlparse(url).path.lstrip("/"),
        webhook_url=url,
        # Telegram sends this back on every update; PTB drops requests without it.
        secret_token=secrets.token_urlsafe(32),
        bootstrap_retries=BOOTSTRAP_RETRIES,
        allowed_updates=UPDATES,
        stop_signals=stop_signals,
    )


def run_bot(
    config: Config,
    answerer: Answerer,
    token: str,
    *,
    stop_signals: Sequence[int] | None = STOP_SIGNALS,
    flood_limits: bool = True,
) -> int:
    """Run the Telegram bot until interrupted; TanyaError when the Bot API stops it."""
    protect_token_in_logs(token, debug=config.log_level == "DEBUG")
    app = build_application(config, answerer, token, flood_limits=flood_limits)
    tanya: TanyaBot = app.bot_data["tanya"]
    api = config.telegram.base_url
    failure: TelegramError | None = None
    try:
        if config.telegram.webhook_url:
            log.info("webhook mode: %s", config.telegram.webhook_url)
            serve_webhook(app, config, stop_signals=stop_signals)
        else:
            log.info("long polling %s", api)
            poll(app, stop_signals=stop_signals)
    except TelegramError as exc:
        failure = exc
    if tanya.auth_lost is not None or auth_error_in(failure):
        what = (
            "stopped accepting the bot's token; it may have been revoked"
            if tanya.ready
            else "rejected the bot's token"
        )
        raise TanyaError(
            redact(
                f"the Bot API at {api} {what} ({tanya.auth_lost or failure}). "
                f"Check {TOKEN_ENV} (BotFather: /token) and telegram.base_url",
                token,
            )
        ) from None
    if isinstance(failure, NetworkError):
        raise TanyaError(
            redact(
                f"cannot reach the Bot API at {api} ({failure}), after "
                f"{BOOTSTRAP_RETRIES} retries. Check the network and telegram.base_url",
                token,
            )
        ) from None
    if failure is not None:
        raise TanyaError(
            redact(
                f"the Bot API at {api} refused to start the bot: {failure}. "
                f"Check {TOKEN_ENV} and telegram.base_url",
                token,
            )
        ) from None
    return 0
