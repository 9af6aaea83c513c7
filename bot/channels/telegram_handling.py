"""What every Telegram handler shares: commit the work with its replies, then send them.

A handler hands `Handling.commit` the work (a function returning the messages to send). In
ONE transaction the work's effects, the reply messages (a durable row) and the update's
handled mark commit, so a replayed update is never handled twice and a crash never loses
its replies; then a button's answer, "typing" for a slow reply, and the replies go out.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils
from telegram import Bot, Update
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes

from bot.channels.telegram_admin import plain
from bot.channels.telegram_commit import GroupCommit
from bot.channels.telegram_deliveries import TelegramDeliveries
from bot.channels.telegram_journal import CHANNEL, Journal, OutMessage
from bot.channels.telegram_render import ChannelTexts
from bot.deliveries.model import Delivery
from bot.dialogue.engine import Event
from bot.settings import Settings
from bot.storage import savepoint

log = logging.getLogger(__name__)

# Replies to an update that took longer than this to handle start with "typing", and so do
# answers of more than TYPING_FROM messages (long texts split, paced per chat).
SLOW_REPLY = timedelta(seconds=1)
TYPING_FROM = 2
# The longest a cosmetic request (typing, a button's answer) may hold up the real reply.
COSMETIC_TIMEOUT = 1.5
# Button presses answered in this process (to answer each once); forgotten past this size.
ANSWERED_KEEP = 4096

Work = Callable[[], Sequence[OutMessage]]


class Handling:
    """Commit a handler's work, replies and handled mark together; then send the replies."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        settings: Settings,
        bot: Bot,
        *,
        texts: ChannelTexts,
        journal: Journal,
        group: GroupCommit,
        notifications: TelegramDeliveries,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.settings = settings
        self.bot = bot
        self.texts = texts
        self.journal = journal
        self.group = group
        self.notifications = notifications
        self.clock = clock
        self._committed = False
        # Updates whose handled mark a handler committed (so the intake need not add one).
        self.settled: set[int] = set()
        # Updates whose handler raised (seen by on_error): handled with an apology.
        self.failed: set[int] = set()
        # When handling each update began (monotonic): "slow" counts from there.
        self.started: dict[int, float] = {}
        # Updates whose callback query this process answered (or tried to).
        self.answered: set[int] = set()

    def forget(self, update_id: int) -> None:
        """Drop what this process kept about an update once its run ended."""
        self.settled.discard(update_id)
        self.failed.discard(update_id)
        self.started.pop(update_id, None)

    def on_commit(self) -> None:
        """The engine committed something worth delivering (called inside our transaction)."""
        # Act after our own commit, not now.
        self._committed = True

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log a handler failure by type and code location only (no message contents)."""
        error = context.error
        if isinstance(update, Update):
            self.failed.add(update.update_id)
        if error is None:
            return
        log.error(
            "handler error %s:\n%s",
            type(error).__name__,
            "".join(traceback.format_tb(error.__traceback__)),
        )

    # -- mapping ----------------------------------------------------------------------------

    def event(self, update: Update, **fields: Any) -> Event:
        """The engine's view of an update from this channel."""
        user = update.effective_user
        chat = update.effective_chat
        return Event(
            channel=CHANNEL,
            user_id=str(user.id) if user else "0",
            lang_hint=user.language_code if user else None,
            chat_id=str(chat.id) if chat else None,
            username=user.username if user else None,
            **fields,
        )

    def lang(self, update: Update) -> str:
        """The user's Telegram language if we speak it, else the configured one."""
        user = update.effective_user
        code = (user.language_code or "") if user else ""
        code = code.lower()[:2]
        return code if code in ("it", "en") else self.settings.language

    def apology(self, update: Update, chat_id: int) -> list[OutMessage]:
        """A short apology for a failed handler, in the user's language (none in groups)."""
        chat = update.effective_chat
        if not chat_id or chat is None or chat.type != ChatType.PRIVATE:
            return []
        return plain(chat_id, self.texts.get(self.lang(update), "handler_error"))

    # -- commit and send ----------------------------------------------------------------------

    async def commit(
        self,
        update: Update,
        chat_id: int,
        work: Work,
        *,
        watch: Callable[[], int | None] | None = None,
        answer: str | None = None,
    ) -> None:
        """Run `work` and store its messages and the handled mark atomically, then send.

        `answer` (a callback query's notice, "" for none) is sent right after the commit:
        once per button press even across a crash, and before the slower replies.

        `watch` names an enquiry the work may change (after it ran); if it did, its post in
        the admin chat is brought up to date.
        """
        update_id = update.update_id
        now = self.clock()

        before: list[tuple[Any, ...]] = []

        def body() -> tuple[Delivery | None, list[OutMessage], bool] | None:
            if not self.journal.mark_handled(update_id, now) and self.journal.is_handled(update_id):
                return None
            self._committed = False
            try:
                # A savepoint: a failing handler leaves no half-done change behind, and the
                # update is still handled (once) with an apology instead of silence.
                with savepoint(self.db):
                    if watch is not None:
                        before.append(self._fingerprint(watch()))
                    messages = list(work())
            except Exception as exc:
                log.error(
                    "handling update failed %s:\n%s",
                    type(exc).__name__,
                    "".join(traceback.format_tb(exc.__traceback__)),
                )
                self._committed = False
                before.clear()
                messages = self.apology(update, chat_id)
            committed = self._committed
            reply = self.journal.add_replies(chat_id, messages, now) if messages else None
            return reply, messages, committed

        # Stored durably (group commit) before anything is sent. The handler's own savepoints
        # (engine, enquiries) keep each domain change atomic.
        outcome = await self.group.run(body, savepoint=False)
        self.settled.add(update_id)
        if outcome is None:
            return
        if answer is not None and update.callback_query is not None:
            await self.answer(update_id, update.callback_query.id, answer or None)
        reply, messages, committed = outcome
        if committed or watch is not None:
            self.notifications.kick()
        if messages:
            started = self.started.get(update_id)
            slow = started is not None and time.monotonic() - started > SLOW_REPLY.total_seconds()
            if (slow or len(messages) > TYPING_FROM) and chat_id:
                await self._typing(chat_id)
            await self.notifications.deliver_reply(reply, messages)
        if watch is not None and before:
            enquiry_id = watch()
            # Only a real change: Telegram refuses an edit that changes nothing.
            if enquiry_id is not None and self._fingerprint(enquiry_id) != before[0]:
                await self.notifications.refresh_post(enquiry_id)

    def _fingerprint(self, enquiry_id: int | None) -> tuple[Any, ...]:
        if enquiry_id is None:
            return ()
        row = self.db.execute(
            "SELECT status, answered_at, closed_at, erased_at FROM enquiries WHERE id = ?",
            [enquiry_id],
        ).fetchone()
        return tuple(row) if row is not None else ()

    async def answer(self, update_id: int, query_id: str, text: str | None) -> None:
        """answerCallbackQuery, once per update in this process; never holds things up."""
        if update_id in self.answered:
            return
        if len(self.answered) >= ANSWERED_KEEP:
            self.answered.clear()
        self.answered.add(update_id)
        try:
            async with asyncio.timeout(COSMETIC_TIMEOUT):
                await self.bot.answer_callback_query(query_id, text=text[:200] if text else None)
        except BadRequest:
            # Too old (for example replayed after a restart) or answered already: nothing
            # left to answer.
            pass
        except (TelegramError, TimeoutError) as exc:
            log.warning("answerCallbackQuery failed: %s", type(exc).__name__)

    async def _typing(self, chat_id: int) -> None:
        # Cosmetic: at most COSMETIC_TIMEOUT before the real reply, whatever Telegram does.
        try:
            async with asyncio.timeout(COSMETIC_TIMEOUT):
                await self.bot.send_chat_action(chat_id, ChatAction.TYPING)
        except (TelegramError, TimeoutError) as exc:
            log.info("typing action failed: %s", type(exc).__name__)
