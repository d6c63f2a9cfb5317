"""tanya: answers questions about news articles with exact quotes, in Telegram or a terminal."""

from __future__ import annotations

import argparse
import asyncio
import html
import logging
import os
import secrets
import signal
import sys
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote, urlparse

import httpx
from telegram import (
    BotCommand,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from retrieval.answer import Answerer, clean_question
from retrieval.config import Config, load_config
from retrieval.errors import QuestionError, ReindexLockedError, TanyaError
from telegram_format import answer_messages, sources_html
from texts import TEXTS, Texts, for_question, for_user

if TYPE_CHECKING:  # ingestion (trafilatura) is imported when first used: start-up stays quick
    from retrieval.ingest import IngestReport, Outcome

log = logging.getLogger("tanya")

TOKEN_ENV = "TELEGRAM_BOT_TOKEN"

# How long an answer may take before the chat is shown "typing…" (each action is a request
# that counts against Telegram's flood limit, so quick answers go without one).
TYPING_AFTER_SECONDS = 1.0
# Bot API calls that fail on the network are retried this many times, waiting twice as long
# before each new try.
NETWORK_RETRIES = 5
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 30.0
# Telegram's 429 answers are retried (after the wait it asks for) this many times.
FLOOD_RETRIES = 3
# Start-up calls (getMe, deleteWebhook or setWebhook) are retried this many times. (getUpdates
# never reaches the rate limiter: PTB retries it in its polling loop and on_error logs it.)
SELF_RETRYING = frozenset({"getMe", "deleteWebhook", "setWebhook"})
BOOTSTRAP_RETRIES = 5
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGABRT)
# A 403 from these is about one chat (the user blocked the bot, it left the group); from any
# other method, like a 401 from any method, it means the token no longer works.
CHAT_METHODS = frozenset({"sendMessage", "sendChatAction"})
# Memory bounds: chats with a history, users with a rate-limit window, chats refused.
MAX_CHATS = 10_000


class ChatHistories:
    """The last few questions of each chat, bounded in questions per chat and in chats."""

    def __init__(self, size: int, max_chats: int = MAX_CHATS):
        self.size = size
        self.max_chats = max_chats
        self._chats: OrderedDict[int, deque[str]] = OrderedDict()

    def record(self, chat_id: int, question: str) -> tuple[str, ...]:
        """The chat's earlier questions (oldest first), then remember this one."""
        if self.size == 0:
            return ()
        history = self._chats.pop(chat_id, None) or deque(maxlen=self.size)
        earlier = tuple(history)
        history.append(question)
        self._chats[chat_id] = history
        while len(self._chats) > self.max_chats:
            self._chats.popitem(last=False)
        return earlier


class RateLimit:
    """At most `per_minute` questions per user in any 60 seconds (0 = no limit)."""

    def __init__(self, per_minute: int, max_users: int = MAX_CHATS, window: float = 60.0):
        self.per_minute = per_minute
        self.window = window
        self.max_users = max_users
        self._times: OrderedDict[int, deque[float]] = OrderedDict()
        self._warned: set[int] = set()

    def allow(self, user_id: int, now: float) -> bool:
        """Count a question; False when the user is over the limit."""
        if self.per_minute == 0:
            return True
        times = self._times.pop(user_id, None) or deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        allowed = len(times) < self.per_minute
        if allowed:
            times.append(now)
            self._warned.discard(user_id)
        self._times[user_id] = times
        while len(self._times) > self.max_users:
            old, _ = self._times.popitem(last=False)
            self._warned.discard(old)
        return allowed

    def first_refusal(self, user_id: int) -> bool:
        """True once per stretch of refused questions, so "slow down" is not sent on every one."""
        if user_id in self._warned:
            return False
        self._warned.add(user_id)
        return True


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


def _auth_error_in(exc: BaseException | None) -> bool:
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


class TanyaBot:
    """The Telegram adapter: turns messages into questions and Answers into HTML replies."""

    def __init__(self, config: Config, answerer: Answerer):
        self.config = config
        self.answerer = answerer
        self.histories = ChatHistories(config.telegram.history_size)
        self.rate_limit = RateLimit(config.telegram.rate_limit_per_minute)
        # Refused admin commands are answered within the same limit as questions, and logged
        # once per user a minute: a flood of /add costs neither replies nor log lines.
        self.refusals = RateLimit(config.telegram.rate_limit_per_minute)
        self.refusals_logged = RateLimit(1)
        self.allowed = frozenset(config.telegram.allowed_chat_ids)
        self.refused: set[int] = set()
        self._watcher: asyncio.Task | None = None
        self.admins = frozenset(config.telegram.admin_ids)
        # /add, /refresh and the feed timer take turns (and hold the reindex lock meanwhile).
        self._ingesting = asyncio.Lock()
        self._refresher: asyncio.Task | None = None
        self.app: Application | None = None
        # Set when the Bot API stops accepting the token: the bot then stops, and says why.
        self.auth_lost: str | None = None
        self.ready = False
        self._stopping = False

    def lose_auth(self, endpoint: str, exc: TelegramError) -> None:
        """The token stopped working: remember why (once) and stop the application."""
        if self.auth_lost is None:
            self.auth_lost = f"{endpoint}: {exc}"
            log.debug("authorisation lost at %s", endpoint, exc_info=exc)
        app = self.app
        if app is None:
            return
        if not app.running:
            # Starting up: this only marks the application to stop. Every further refused
            # call comes here again, so one that starts running afterwards still stops.
            app.stop_running()
        elif app.updater is not None and app.updater.running and not self._stopping:
            # Serving (stop_running stops the event loop's run_forever); not once shutting
            # down, when stopping the loop again would cut the shutdown short.
            self._stopping = True
            app.stop_running()

    async def post_init(self, app: Application) -> None:
        """Register the command menu and start watching for a rebuilt index."""
        await self.set_commands(app)
        self._watcher = asyncio.create_task(self.watch_index())
        if self.config.sources.refresh_minutes > 0 and self.config.sources.feeds:
            self._refresher = asyncio.create_task(self.refresh_feeds_every())
        self.ready = True
        log.info(
            "bot @%s ready: %d articles, index %s",
            app.bot.username,
            len(self.answerer.articles()),
            self.answerer.index.version,
        )

    async def set_commands(self, app: Application) -> None:
        """The command menu: by default in ui.language (Indonesian under auto), and under auto
        once more in each language for users whose Telegram speaks it."""
        setting = self.config.ui.language
        menus: list[tuple[Texts, str | None]] = [(for_user(setting, None), None)]
        if setting == "auto":
            menus += [(texts, code) for code, texts in TEXTS.items()]
        for texts, code in menus:
            commands = [BotCommand(name, text) for name, text in texts.commands]
            await app.bot.set_my_commands(commands, language_code=code)

    async def post_shutdown(self, app: Application) -> None:
        """Stop watching the index and reading the feeds."""
        for task in (self._watcher, self._refresher):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

    async def watch_index(self) -> None:
        """Swap in a rebuilt index when the reindex script publishes one."""
        last_problem = None
        while True:
            await asyncio.sleep(self.config.telegram.reload_check_seconds)
            try:
                # Loading is blocking work; the old index serves until the new one is complete.
                if await asyncio.to_thread(self.answerer.reload_if_changed):
                    log.info("now serving index %s", self.answerer.index.version)
                last_problem = None
            except Exception as exc:  # noqa: BLE001 - a bad new index must not stop the bot
                # Said once, not every few seconds, until the problem changes or goes away;
                # an unexpected error's traceback goes to DEBUG.
                problem = _summary(exc)
                if problem != last_problem:
                    log.error("cannot load the index (%s); still serving the previous one", problem)
                    if not isinstance(exc, TanyaError):
                        log.debug("loading the new index failed", exc_info=exc)
                last_problem = problem

    # Articles from the web

    async def run_ingest(
        self, urls: Sequence[str], feeds: bool, wait: bool = True
    ) -> IngestReport | None:
        """Fetch urls (and the feeds) into the corpus and serve the new index; None when
        another reindex holds the lock, or (unless wait) another ingestion runs."""
        from retrieval.ingest import ingest

        if not wait and self._ingesting.locked():
            log.info("articles not fetched: another ingestion is running")
            return None
        async with self._ingesting:
            try:
                # Fetching and embedding are blocking work, like answering.
                report = await asyncio.to_thread(
                    ingest, self.config, urls, feeds, embedder=self.answerer.embedder
                )
            except ReindexLockedError as exc:
                log.info("articles not fetched: %s", exc)
                return None
            if await asyncio.to_thread(self.answerer.reload_if_changed):
                log.info("now serving index %s", self.answerer.index.version)
            return report

    async def refresh_feeds_every(self) -> None:
        """Read the feeds at start-up and then every sources.refresh_minutes."""
        while True:
            try:
                report = await self.run_ingest([], feeds=True)
                if report is not None:
                    log.info("feeds read: %s", report.summary)
                    for problem in report.feed_problems:
                        log.warning("feed %s not read: %s", problem.url, problem.reason)
            except Exception as exc:  # noqa: BLE001 - a failed refresh must not stop the bot
                log.error("reading the feeds failed: %s", _summary(exc))
                log.debug("reading the feeds failed", exc_info=exc)
            await asyncio.sleep(self.config.sources.refresh_minutes * 60)

    def is_admin(self, update: Update) -> bool:
        """Whether the message comes from one of telegram.admin_ids."""
        user = update.effective_user
        return user is not None and user.id in self.admins

    async def refuse_admin_action(self, update: Update, action: str) -> None:
        """The refusal for anyone but an admin, logged with who asked (once a minute per
        user), and sent within the rate limit."""
        user = update.effective_user
        user_id = user.id if user else update.effective_chat.id
        now = time.monotonic()
        if self.refusals_logged.allow(user_id, now):
            log.warning(
                "refused %s from user %s in chat %s: not in telegram.admin_ids "
                "(further refusals of this user in the next minute are not logged)",
                action,
                user_id,
                update.effective_chat.id,
            )
        if self.refusals.allow(user_id, now):
            texts = self.command_texts(update)
            await reply(update.effective_message, html.escape(texts.admin_only))

    async def _working(self, message: Message) -> None:
        """Show "typing…" in the message's chat (only a courtesy: a failure is logged)."""
        try:
            await message.get_bot().send_chat_action(message.chat.id, ChatAction.TYPING)
        except TelegramError as exc:  # only a courtesy
            log.info("typing action failed in chat %s: %s", message.chat.id, exc)

    async def admin_allowed(self, update: Update, command: str) -> bool:
        """Whether this admin command may run here; if not, the refusal is sent."""
        if not self.chat_allowed(update):
            await self.refuse(update)
            return False
        if not self.is_admin(update):
            await self.refuse_admin_action(update, command)
            return False
        return True

    async def ingest_for_admin(
        self,
        update: Update,
        command: str,
        urls: Sequence[str],
        feeds: bool,
        failed: Callable[[str], str],
    ) -> IngestReport | None:
        """Run an admin's ingestion; None once the admin has been told it failed (in failed's
        words, given the reason) or that another is running."""
        message, texts = update.effective_message, self.command_texts(update)
        admin = update.effective_user.id
        log.info("admin %s: %s", admin, command)
        await self._working(message)
        try:
            report = await self.run_ingest(urls, feeds, wait=False)
        except TanyaError as exc:  # the corpus folder or the reindex: the admin can act on it
            log.error("admin %s: %s failed: %s", admin, command, exc)
            await reply(message, html.escape(failed(str(exc))))
            return None
        if report is None:
            await reply(message, html.escape(texts.busy))
        return report

    async def add(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/add <url>: fetch one article into the corpus; the reply names it once searchable."""
        if not await self.admin_allowed(update, "/add"):
            return
        message, texts = update.effective_message, self.command_texts(update)
        parts = (message.text or "").split(maxsplit=1)
        if len(parts) < 2:
            return await reply(message, texts.add_usage)
        url = parts[1].strip()
        report = await self.ingest_for_admin(
            update,
            f"/add {url}",
            [url],
            feeds=False,
            failed=lambda reason: texts.add_failed.format(url=url, reason=reason),
        )
        if report is None:
            return
        (outcome,) = report.outcomes
        log.info(
            "admin %s: /add %s: %s%s%s",
            update.effective_user.id,
            url,
            outcome.status,
            f" ({outcome.reason})" if outcome.reason else f": {outcome.title}",
            f"; {outcome.note}" if outcome.note else "",
        )
        await reply(message, html.escape(_outcome_text(texts, outcome)))

    async def refresh(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/refresh: read the feeds now."""
        if not await self.admin_allowed(update, "/refresh"):
            return
        message, texts = update.effective_message, self.command_texts(update)
        if not self.config.sources.feeds:
            return await reply(message, html.escape(texts.no_feeds))
        report = await self.ingest_for_admin(
            update,
            "/refresh",
            [],
            feeds=True,
            failed=lambda reason: texts.refresh_failed.format(reason=reason),
        )
        if report is None:
            return
        log.info("admin %s: /refresh: %s", update.effective_user.id, report.summary)
        counts = {s: report.count(s) for s in ("added", "updated", "unchanged", "skipped")}
        await reply(message, html.escape(texts.refreshed.format(**counts)))

    # In which language

    def command_texts(self, update: Update) -> Texts:
        """Texts for a reply to a command: ui.language, or under auto the user's language."""
        user = update.effective_user
        return for_user(self.config.ui.language, user.language_code if user else None)

    def message_texts(self, update: Update) -> Texts:
        """Texts for a reply to any message: a question's language, or a command's user's."""
        message = update.effective_message
        text = (message.text or "") if message is not None else ""
        command, _, rest = text.partition(" ")
        if command.startswith("/") and not (command.startswith("/ask") and rest.strip()):
            return self.command_texts(update)
        question = rest if command.startswith("/") else text
        return for_question(self.config.ui.language, question)

    # Who gets answers

    def chat_allowed(self, update: Update) -> bool:
        """Whether this chat may use the bot (an empty allowlist lets everyone in)."""
        chat = update.effective_chat
        return not self.allowed or (chat is not None and chat.id in self.allowed)

    async def refuse(self, update: Update) -> None:
        """One polite refusal per chat; every attempt is logged."""
        chat, user = update.effective_chat, update.effective_user
        first = chat.id not in self.refused
        log.log(
            logging.WARNING if first else logging.INFO,
            "refused chat %s (%s) from user %s: not in telegram.allowed_chat_ids",
            chat.id,
            chat.type,
            user.id if user else None,
        )
        if first:
            if len(self.refused) >= MAX_CHATS:
                self.refused.clear()
            self.refused.add(chat.id)
            texts = self.message_texts(update)
            await reply(update.effective_message, html.escape(texts.refusal))

    def addressed(self, message: Message, bot_id: int, username: str) -> str | None:
        """The question in a group message meant for the bot (mention or reply), else None."""
        text = message.text or ""
        replied = message.reply_to_message
        to_bot = bool(replied and replied.from_user and replied.from_user.id == bot_id)
        kinds = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
        for entity, part in message.parse_entities(kinds).items():
            if entity.type == MessageEntity.MENTION:
                mine = part.lower() == f"@{username}".lower()
            else:
                mine = entity.user is not None and entity.user.id == bot_id
            if mine:
                to_bot = True
                text = text.replace(part, " ", 1)
        return text if to_bot else None

    # Handlers

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start: what the bot does and which articles it knows."""
        if not self.chat_allowed(update):
            return await self.refuse(update)
        # Sorting every article's title is work for a thread with a large corpus.
        texts = self.command_texts(update)
        known = await asyncio.to_thread(lambda: sources_html(self.answerer.articles(), 5, texts))
        text = f"{html.escape(texts.start)}\n\n{known}"
        await reply_parts(update.effective_message, [text, texts.help])

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/help: how to ask."""
        if not self.chat_allowed(update):
            return await self.refuse(update)
        await reply(update.effective_message, self.command_texts(update).help)

    async def sources(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/sources: the indexed articles, linked where known."""
        if not self.chat_allowed(update):
            return await self.refuse(update)
        texts = self.command_texts(update)
        listing = await asyncio.to_thread(
            lambda: sources_html(self.answerer.articles(), texts=texts)
        )
        await reply_parts(update.effective_message, [listing])

    async def ask_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/ask <question>: the way to ask in a group (works in private chats too)."""
        if not self.chat_allowed(update):
            return await self.refuse(update)
        parts = (update.effective_message.text or "").split(maxsplit=1)
        if len(parts) < 2:
            return await reply(update.effective_message, self.command_texts(update).ask_usage)
        await self.answer(update, parts[1])

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A text message: a question in a private chat; in a group only when meant for the bot."""
        message = update.effective_message
        if message.chat.type == ChatType.PRIVATE:
            question = message.text
        else:
            question = self.addressed(message, context.bot.id, context.bot.username)
            if question is None:
                return
        if not self.chat_allowed(update):
            return await self.refuse(update)
        await self.answer(update, question)

    async def answer(self, update: Update, question: str) -> None:
        """Answer one question in its chat, off the event loop, with the chat's history."""
        message = update.effective_message
        user = update.effective_user
        user_id = user.id if user else message.chat.id
        texts = for_question(self.config.ui.language, question)
        if not self.rate_limit.allow(user_id, time.monotonic()):
            log.info("rate limit: user %s in chat %s", user_id, message.chat.id)
            if self.rate_limit.first_refusal(user_id):
                await reply(message, html.escape(texts.slow_down))
            return
        try:
            question = clean_question(question)
        except QuestionError as exc:
            return await reply(message, html.escape(_sentence(texts.cannot_ask(exc))))
        history = self.histories.record(message.chat.id, question)
        # Encoding and search are CPU work: a thread keeps other chats' updates flowing.
        work = asyncio.ensure_future(asyncio.to_thread(self.answerer.ask, question, history))
        done, _ = await asyncio.wait({work}, timeout=TYPING_AFTER_SECONDS)
        if not done:
            await self._working(message)
        try:
            result = await work
        except QuestionError as exc:
            return await reply(message, html.escape(_sentence(texts.cannot_ask(exc))))
        except TanyaError as exc:  # a damaged index file, named with its fix: no traceback
            log.error("cannot answer in chat %s: %s", message.chat.id, exc)
            return await reply(message, html.escape(texts.apology))
        # Splitting a long answer into valid HTML parts is CPU work too.
        parts = await asyncio.to_thread(
            answer_messages,
            result,
            max_messages=self.config.telegram.max_messages_per_answer,
            texts=texts,
        )
        await reply_parts(message, parts)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log the failure with its update id, tell the user, keep running."""
        if _auth_error_in(context.error) or self.auth_lost is not None:
            return  # the bot is stopping; run_bot says why, once
        if not isinstance(update, Update):
            # Polling trouble: PTB retries getUpdates itself, with backoff.
            log.warning("Bot API polling error: %s", context.error)
            log.debug("polling error", exc_info=context.error)
            return
        if isinstance(context.error, Forbidden):
            # The user blocked the bot or it left the group: nobody there to apologise to.
            log.warning("update %s: cannot reply (%s)", update.update_id, context.error)
            return
        log.error("update %s failed", update.update_id, exc_info=context.error)
        if update.effective_message is not None:
            try:
                texts = self.message_texts(update)
                await reply(update.effective_message, html.escape(texts.apology))
            except TelegramError as exc:
                log.warning("could not send the apology for update %s: %s", update.update_id, exc)


def _outcome_text(texts: Texts, outcome: Outcome) -> str:
    """What became of an article /add asked for, in texts' language."""
    if outcome.status == "skipped":
        return texts.add_failed.format(
            url=outcome.url, reason=texts.reason(outcome.kind, outcome.reason)
        )
    template = {"added": texts.added, "updated": texts.updated, "unchanged": texts.unchanged}
    return template[outcome.status].format(title=outcome.title)


def _summary(exc: BaseException) -> str:
    """A TanyaError's own message (written for a user), else the exception's type and message."""
    return str(exc) if isinstance(exc, TanyaError) else f"{type(exc).__name__}: {exc}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


async def reply(message: Message, text: str) -> Message:
    """Send HTML text in answer to message (still sent if that message is gone)."""
    return await message.get_bot().send_message(
        chat_id=message.chat.id,
        text=text,
        parse_mode=ParseMode.HTML,
        reply_parameters=ReplyParameters(message.message_id, allow_sending_without_reply=True),
        link_preview_options=LinkPreviewOptions(is_disabled=True),
    )


async def reply_parts(message: Message, parts: Sequence[str]) -> None:
    """Send each part in order, each in answer to message."""
    for part in parts:
        await reply(message, part)


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
    app.add_handler(MessageHandler(messages & filters.TEXT & ~filters.COMMAND, tanya.text))
    app.add_error_handler(tanya.on_error)
    app.bot_data["tanya"] = tanya
    tanya.app = app
    return app


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
            return not _auth_error_in(exc)
        if not record.name.startswith("telegram"):
            return True
        if _auth_error_in(exc) or isinstance(exc, NetworkError):
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


def poll(
    app: Application, *, timeout: float = 10, stop_signals: Sequence[int] | None = STOP_SIGNALS
) -> None:
    """Long-poll the Bot API until stopped (the default mode)."""
    app.run_polling(
        timeout=timeout,
        bootstrap_retries=BOOTSTRAP_RETRIES,
        allowed_updates=[Update.MESSAGE],
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
        allowed_updates=[Update.MESSAGE],
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
    if tanya.auth_lost is not None or _auth_error_in(failure):
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tanya", description=__doc__)
    parser.add_argument("--config", help="config file (default: config.yaml)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--console", action="store_true", help="ask questions in this terminal")
    mode.add_argument("--ask", metavar="QUESTION", help="answer one question and exit")
    mode.add_argument("--check", action="store_true", help="health check: load, answer, exit 0/1")
    parser.add_argument("--json", action="store_true", help="with --ask: print the answer as JSON")
    args = parser.parse_args(argv)
    if args.json and args.ask is None:
        parser.error("--json goes with --ask")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tanya` command."""
    args = parse_args(argv)
    token = ""
    try:
        config = load_config(args.config)
        logging.basicConfig(
            level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        token = os.environ.get(TOKEN_ENV, "").strip()
        if token:
            protect_token_in_crashes(token)
        if not (args.console or args.ask is not None or args.check) and not token:
            print(
                f"tanya: set {TOKEN_ENV} to run the Telegram bot "
                "(see the README), or use console mode: python bot.py --console",
                file=sys.stderr,
            )
            return 2
        answerer = Answerer(config)
        import console

        if args.ask is not None:
            return console.ask_once(answerer, args.ask, args.json)
        if args.console:
            return console.run_console(answerer, config.telegram.history_size)
        if args.check:
            return console.health_check(answerer)
        return run_bot(config, answerer, token)
    except TanyaError as exc:
        print(redact(f"tanya: {exc}", token), file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader (a pager, `head`) went away: nothing left to say, and nobody to say it to.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
