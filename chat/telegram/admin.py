"""The admins' side of the bot: /add and /refresh, and the feeds read on a timer."""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from telegram import Update
from telegram.ext import ContextTypes

from chat.telegram.logs import error_summary
from chat.telegram.transport import reply
from chat.texts import Texts
from retrieval.errors import ReindexLockedError, TanyaError
from retrieval.web.feeds import feed_urls

if TYPE_CHECKING:  # ingestion (trafilatura) is imported when first used: start-up stays quick
    from retrieval.web.ingest import IngestReport, Outcome

log = logging.getLogger("tanya")


class AdminCommands:
    """The admins' commands (/add, /refresh) and the feed timer, mixed into TanyaBot, which
    holds the state they use (config, answerer, admins, the ingestion lock) and the checks
    they share with the other handlers (chat_allowed, refuse, command_texts, _working)."""

    async def run_ingest(
        self, urls: Sequence[str], feeds: bool, wait: bool = True
    ) -> IngestReport | None:
        """Fetch urls (and the feeds) into the corpus and serve the new index; None when
        another reindex holds the lock, or (unless wait) another ingestion runs."""
        from retrieval.web.ingest import ingest

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
        """Read the feeds at start-up and then every sources.refresh_minutes; a feed followed
        while the bot runs (tanya-add --feed) is read from the next round on."""
        while True:
            try:
                has_feeds = await asyncio.to_thread(feed_urls, self.config)
                report = await self.run_ingest([], feeds=True) if has_feeds else None
                if report is not None:
                    log.info("feeds read: %s", report.summary)
                    for problem in report.feed_problems:
                        log.warning("feed %s not read: %s", problem.url, problem.reason)
            except Exception as exc:  # noqa: BLE001 - a failed refresh must not stop the bot
                log.error("reading the feeds failed: %s", error_summary(exc))
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
        if not feed_urls(self.config):  # those in sources.feeds and those followed
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


def _outcome_text(texts: Texts, outcome: Outcome) -> str:
    """What became of an article /add asked for, in texts' language."""
    if outcome.status == "skipped":
        return texts.add_failed.format(
            url=outcome.url, reason=texts.reason(outcome.kind, outcome.reason)
        )
    template = {"added": texts.added, "updated": texts.updated, "unchanged": texts.unchanged}
    return template[outcome.status].format(title=outcome.title)
