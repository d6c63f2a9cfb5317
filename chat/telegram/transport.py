"""Talking to the Bot API: network retries, flood control, noticing a token that stopped
working, and sending a reply."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import httpx
from telegram import InlineKeyboardMarkup, LinkPreviewOptions, Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError
from telegram.ext import AIORateLimiter
from telegram.request import HTTPXRequest

log = logging.getLogger("tanya")

# Bot API calls that fail on the network are retried this many times, waiting twice as long
# before each new try.
NETWORK_RETRIES = 5
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 30.0
# Telegram's 429 answers are retried (after the wait it asks for) this many times.
FLOOD_RETRIES = 3
# Start-up calls (getMe, deleteWebhook or setWebhook) are retried by PTB itself (app.py's
# BOOTSTRAP_RETRIES). (getUpdates never reaches the rate limiter: PTB retries it in its
# polling loop and on_error logs it.)
SELF_RETRYING = frozenset({"getMe", "deleteWebhook", "setWebhook"})
# A 403 from these is about one chat (the user blocked the bot, it left the group); from any
# other method, like a 401 from any method, it means the token no longer works.
CHAT_METHODS = frozenset({"sendMessage", "sendChatAction"})


def _safe_to_retry(exc: NetworkError, endpoint: str) -> bool:
    """Whether repeating the call cannot deliver a message twice."""
    if isinstance(exc, BadRequest):
        return False
    cause = exc.__cause__
    if not isinstance(cause, httpx.TransportError):
        return True  # the Bot API answered with a server error: nothing was sent
    if isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return True  # the request never left
    # The connection broke after the request went out: a message may have been sent, so
    # only calls that are harmless to repeat are retried.
    return endpoint != "sendMessage"


class AuthorizationLost(TelegramError):
    """The Bot API stopped accepting the token (401, or 403 for the bot as a whole)."""


def is_auth_failure(exc: BaseException, endpoint: str) -> bool:
    """Whether this error from endpoint means the token no longer works."""
    if isinstance(exc, (InvalidToken, AuthorizationLost)):
        return True
    return isinstance(exc, Forbidden) and endpoint not in CHAT_METHODS


def auth_error_in(exc: BaseException | None) -> bool:
    """Whether exc, or an exception it was raised from, is an authorisation failure."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (InvalidToken, AuthorizationLost)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class AuthWatchingRequest(HTTPXRequest):
    """PTB's HTTP client, telling `on_auth_lost` when a call shows the token no longer works.

    Every Bot API call, getUpdates included, goes through one of the two clients, so a lost
    authorisation is noticed whichever call meets it first.
    """

    def __init__(self, on_auth_lost: Callable[[str, TelegramError], None], **kwargs):
        super().__init__(**kwargs)
        self.on_auth_lost = on_auth_lost

    async def post(self, url: str, *args, **kwargs):
        try:
            return await super().post(url, *args, **kwargs)
        except TelegramError as exc:
            endpoint = url.rsplit("/", 1)[-1]
            if not is_auth_failure(exc, endpoint):
                raise
            self.on_auth_lost(endpoint, exc)
            if endpoint == "getUpdates":
                # An InvalidToken would end PTB's polling task with an exception that its
                # shutdown re-raises half-way, leaving the event loop to close under pending
                # tasks; any other TelegramError lets the polling loop wait for the stop.
                raise AuthorizationLost(str(exc)) from exc
            # Elsewhere (getMe at start-up above all) PTB gives up at once on an InvalidToken.
            raise InvalidToken(str(exc)) from exc


class RetryingRateLimiter(AIORateLimiter):
    """Telegram's flood limits and 429 waits (PTB's AIORateLimiter), plus network retries."""

    async def process_request(self, callback, args, kwargs, endpoint, data, rate_limit_args):
        if endpoint in SELF_RETRYING:
            # PTB already retries these (bootstrap_retries, the polling loop's backoff);
            # retrying them here too would multiply the waits before a clear failure.
            try:
                return await super().process_request(
                    callback, args, kwargs, endpoint, data, rate_limit_args
                )
            except NetworkError as exc:
                log.warning("Bot API %s failed (%s); python-telegram-bot retries it", endpoint, exc)
                raise
        delay = RETRY_FIRST_DELAY
        for attempt in range(NETWORK_RETRIES + 1):
            try:
                return await super().process_request(
                    callback, args, kwargs, endpoint, data, rate_limit_args
                )
            except NetworkError as exc:
                if attempt == NETWORK_RETRIES or not _safe_to_retry(exc, endpoint):
                    raise
                log.warning("Bot API %s failed (%s); retrying in %.1f s", endpoint, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
        raise AssertionError("unreachable")


async def reply(
    message: Message, text: str, buttons: InlineKeyboardMarkup | None = None
) -> Message:
    """Send HTML text in answer to message (still sent if that message is gone)."""
    return await message.get_bot().send_message(
        chat_id=message.chat.id,
        text=text,
        parse_mode=ParseMode.HTML,
        reply_parameters=ReplyParameters(message.message_id, allow_sending_without_reply=True),
        link_preview_options=LinkPreviewOptions(is_disabled=True),
        reply_markup=buttons,
    )


async def reply_parts(
    message: Message, parts: Sequence[str], buttons: InlineKeyboardMarkup | None = None
) -> None:
    """Send each part in order, each in answer to message; buttons go under the last."""
    for number, part in enumerate(parts, 1):
        await reply(message, part, buttons if number == len(parts) else None)
