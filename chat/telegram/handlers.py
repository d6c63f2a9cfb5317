"""The bot's handlers: who gets answers, in which language, and questions turned into
answers sent as Telegram HTML."""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import re
import time
from collections import OrderedDict, deque

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputTextMessageContent,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    Update,
)
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import Forbidden, TelegramError
from telegram.ext import Application, ContextTypes

from chat.formatting import source_line
from chat.history import MAX_CHATS
from chat.state import StateStore
from chat.telegram.admin import AdminCommands
from chat.telegram.logs import error_summary
from chat.telegram.messages import answer_messages, sources_html
from chat.telegram.transport import auth_error_in, reply, reply_parts
from chat.texts import TEXTS, Texts, for_question, for_user
from retrieval.answering.answer import Answer, Answerer, clean_question
from retrieval.config import Config
from retrieval.errors import QuestionError, TanyaError

log = logging.getLogger("tanya")

# How long an answer may take before the chat is shown "typing…" (each action is a request
# that counts against Telegram's flood limit, so quick answers go without one).
TYPING_AFTER_SECONDS = 1.0
# Telegram sends an inline query as the user types: one is answered once no newer one from
# the same user came within this time (the rate limit counts only those).
INLINE_SETTLE_SECONDS = 0.4
INLINE_DESCRIPTION_CHARS = 200
# The feedback buttons' data: "vote:<answer id>:up" or "…:down".
VOTE_DATA = re.compile(r"vote:(\d{1,18}):(up|down)")


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


class TanyaBot(AdminCommands):
    """The Telegram adapter: turns messages into questions and Answers into HTML replies."""

    def __init__(self, config: Config, answerer: Answerer):
        self.config = config
        self.answerer = answerer
        self.state = StateStore(
            config.state_path, config.telegram.history_size, config.telegram.history_minutes
        )
        # The latest inline query of each user (older ones are left unanswered).
        self._inline_latest: OrderedDict[int, str] = OrderedDict()
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
        """Open the state file, register the command menu, start watching for a rebuilt index."""
        await asyncio.to_thread(self.state.open)
        await self.set_commands(app)
        self._watcher = asyncio.create_task(self.watch_index())
        if self.config.sources.refresh_minutes > 0:
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
        """Stop watching the index and reading the feeds; close the state file."""
        for task in (self._watcher, self._refresher):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        await asyncio.to_thread(self.state.close)

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
                problem = error_summary(exc)
                if problem != last_problem:
                    log.error("cannot load the index (%s); still serving the previous one", problem)
                    if not isinstance(exc, TanyaError):
                        log.debug("loading the new index failed", exc_info=exc)
                last_problem = problem

    async def _working(self, message: Message) -> None:
        """Show "typing…" in the message's chat (only a courtesy: a failure is logged)."""
        try:
            await message.get_bot().send_chat_action(message.chat.id, ChatAction.TYPING)
        except TelegramError as exc:  # only a courtesy
            log.info("typing action failed in chat %s: %s", message.chat.id, exc)

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
        chat_id = message.chat.id
        # Encoding and search are CPU work, and the state file may wait on a lock: a thread
        # keeps other chats' updates flowing.
        work = asyncio.ensure_future(
            asyncio.to_thread(self._answer_and_record, chat_id, user_id, question)
        )
        done, _ = await asyncio.wait({work}, timeout=TYPING_AFTER_SECONDS)
        if not done:
            await self._working(message)
        try:
            result, answer_id = await work
        except QuestionError as exc:
            return await reply(message, html.escape(_sentence(texts.cannot_ask(exc))))
        except TanyaError as exc:  # a damaged index file, named with its fix: no traceback
            log.error("cannot answer in chat %s: %s", chat_id, exc)
            return await reply(message, html.escape(texts.apology))
        # Splitting a long answer into valid HTML parts is CPU work too.
        parts = await asyncio.to_thread(
            answer_messages,
            result,
            max_messages=self.config.telegram.max_messages_per_answer,
            texts=texts,
        )
        buttons = vote_buttons(answer_id) if answer_id is not None else None
        await reply_parts(message, parts, buttons)

    def _answer_and_record(
        self, chat_id: int, user_id: int, question: str
    ) -> tuple[Answer, int | None]:
        """The answer in the chat's context, kept as the chat's latest turn and for votes."""
        history = self.state.earlier(chat_id)
        result = self.answerer.ask(question, history)
        self.state.record(chat_id, result.turn())
        return result, self.state.record_answer(chat_id, user_id, result, history)

    async def forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/forget: clear the chat's history, so the next question starts afresh."""
        if not self.chat_allowed(update):
            return await self.refuse(update)
        await asyncio.to_thread(self.state.forget, update.effective_chat.id)
        await reply(update.effective_message, html.escape(self.command_texts(update).forgotten))

    async def vote(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A 👍 or 👎 under an answer: one vote per user and answer, a new tap replaces it."""
        query = update.callback_query
        found = VOTE_DATA.fullmatch(query.data or "")
        if found is None or not self.chat_allowed(update):
            return await query.answer()
        texts = self.command_texts(update)
        outcome = await asyncio.to_thread(
            self.state.vote, int(found.group(1)), query.from_user.id, found.group(2)
        )
        if outcome is None:
            return await query.answer(texts.vote_unavailable)
        await query.answer(texts.vote_changed if outcome == "changed" else texts.vote_saved)

    async def inline(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """@bot question in any chat: the answer as one inline result, to send there."""
        query = update.inline_query
        user_id = query.from_user.id
        # Cached answers go to every user unless marked personal: with an allowlist they must.
        personal = bool(self.allowed)
        if self.allowed and user_id not in self.allowed:
            if self.refusals_logged.allow(user_id, time.monotonic()):
                log.info("refused inline query from user %s: not in allowed_chat_ids", user_id)
            return await query.answer([], cache_time=0, is_personal=True)
        if not query.query.strip():
            return await query.answer([], cache_time=0, is_personal=personal)
        self._inline_latest.pop(user_id, None)
        self._inline_latest[user_id] = query.id
        while len(self._inline_latest) > MAX_CHATS:
            self._inline_latest.popitem(last=False)
        await asyncio.sleep(INLINE_SETTLE_SECONDS)
        if self._inline_latest.get(user_id) != query.id:
            return  # the user typed on; the newer query is answered instead
        if not self.rate_limit.allow(user_id, time.monotonic()):
            log.info("rate limit: user %s, inline", user_id)
            return await query.answer([], cache_time=0, is_personal=True)
        try:
            question = clean_question(query.query)
            result = await asyncio.to_thread(self.answerer.ask, question)
        except QuestionError:
            return await query.answer([], cache_time=0, is_personal=personal)
        except TanyaError as exc:
            log.error("cannot answer an inline query: %s", exc)
            return await query.answer([], cache_time=0, is_personal=True)
        texts = for_question(self.config.ui.language, question)
        (body, *_) = await asyncio.to_thread(answer_messages, result, max_messages=1, texts=texts)
        await query.answer(
            [inline_result(result, body, texts)],
            cache_time=self.config.telegram.inline_cache_seconds,
            is_personal=personal,
        )

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log the failure with its update id, tell the user, keep running."""
        if auth_error_in(context.error) or self.auth_lost is not None:
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


def vote_buttons(answer_id: int) -> InlineKeyboardMarkup:
    """👍 and 👎 under an answer."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("👍", callback_data=f"vote:{answer_id}:up"),
                InlineKeyboardButton("👎", callback_data=f"vote:{answer_id}:down"),
            ]
        ]
    )


def inline_result(answer: Answer, body: str, texts: Texts) -> InlineQueryResultArticle:
    """The answer as an inline result: titled with the answer span (or what kind of reply it
    is), described by the quoted sentence and its source; sends the answer's HTML."""
    first = answer.quotes[0] if answer.quotes else None
    if answer.kind == "answer" and first is not None and first.answer:
        title = f"{texts.inline_answer}: {first.answer}"
    elif answer.kind == "declined":
        title = texts.inline_declined
    else:
        title = texts.inline_passage
    description = ""
    if first is not None:
        description = f"{first.highlight.strip()} {source_line(first, texts)}"
        if len(description) > INLINE_DESCRIPTION_CHARS:
            description = description[: INLINE_DESCRIPTION_CHARS - 1] + "…"
    key = f"{answer.version}\n{answer.reading}".encode()
    return InlineQueryResultArticle(
        id=hashlib.sha256(key).hexdigest()[:32],
        title=title[:INLINE_DESCRIPTION_CHARS],
        description=description or None,
        input_message_content=InputTextMessageContent(
            body,
            parse_mode=ParseMode.HTML,
            link_preview_options=LinkPreviewOptions(is_disabled=True),
        ),
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")
