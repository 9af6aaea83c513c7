"""Telegram delivery of stored messages: the `notifications` rows of the Telegram channel.

Replies to an update are stored (a `notifications` row of kind `reply`) in the same
transaction that marks the update handled, then sent at once by `deliver_reply`; the
secretariat side (admin chat posts, relayed answers, failed mails) is delivered by a job on
the app's scheduler from `notifications` rows, marked sent only once Telegram accepted them.

The channel talks to this module only through `TelegramNotifications`: `deliver_reply`,
`refresh_post`, `kick`, `add_jobs` and `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlite_utils
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from bot.channels.telegram_admin import answer_messages, mail_failed_messages, post_messages
from bot.channels.telegram_journal import KIND_REPLY, GroupCommit, Journal, OutMessage
from bot.channels.telegram_render import ChannelTexts
from bot.enquiries import POST_ERASED
from bot.logs import network_cause
from bot.settings import Settings

log = logging.getLogger(__name__)

# How often the notification worker looks for due rows (kick() runs it at once).
NOTIFY_EVERY = timedelta(seconds=5)
NOTIFY_BACKOFF_FIRST = timedelta(seconds=5)
NOTIFY_BACKOFF_MAX = timedelta(hours=1)
JOB_ID = "telegram-notifications"
# Seconds to let a running delivery finish when the channel stops.
STOP_GRACE = 3.0


class ChatRunner(Protocol):
    """The channel's per-chat queues: one chat's work in order (replies and notifications)."""

    async def run(self, key: object, job: Callable[[], Any]) -> None: ...


class TelegramNotifications:
    """Send `notifications` rows to Telegram: replies, admin posts, answers, failed mails."""

    def __init__(
        self,
        settings: Settings,
        app: Any,
        bot: Bot,
        *,
        texts: ChannelTexts,
        journal: Journal,
        group: GroupCommit,
        queues: ChatRunner,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        # bot.app.App (started): its database, scheduler and kick().
        self.app = app
        self.db: sqlite_utils.Database = app.db
        self.bot = bot
        self.texts = texts
        self.journal = journal
        self.group = group
        self.queues = queues
        self.clock = clock
        self._notify_lock = asyncio.Lock()
        # What each admin-chat post shows now, to skip edits that would change nothing.
        self._posts: dict[int, tuple[str, tuple[tuple[tuple[str, str], ...], ...]]] = {}
        self._notify_again = False
        self._background: set[asyncio.Task[Any]] = set()
        self._scheduler: Any = None
        add_listener = getattr(app, "add_kick_listener", None)
        self._listening = add_listener is not None
        if add_listener is not None:
            add_listener(self._kick_notifications)

    # -- what the channel calls -----------------------------------------------------------

    async def deliver_reply(self, row_id: int, messages: Sequence[OutMessage]) -> None:
        """Send the replies just stored under `row_id` (a `reply` row) at once."""
        await self._deliver({"id": row_id, "attempts": 0}, messages, update_post_of=None)

    def add_jobs(self, scheduler: Any) -> None:
        """The notification worker on the app's scheduler."""
        self._scheduler = scheduler
        scheduler.add_job(
            self.deliver_notifications,
            "interval",
            seconds=NOTIFY_EVERY.total_seconds(),
            id=JOB_ID,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )

    async def close(self) -> None:
        """Stop kicked runs and the job; wait (a little) for a running delivery to end."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        # The app closes the database after us: no job of ours may still be running then.
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.remove_job(JOB_ID)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_GRACE):
                async with self._notify_lock:
                    pass

    # -- sending --------------------------------------------------------------------------

    async def send(self, message: OutMessage) -> int:
        """Send one stored message (HTML, inline keyboard, optional reply); its message_id."""
        markup = (
            InlineKeyboardMarkup(
                [
                    [InlineKeyboardButton(label, callback_data=cb) for cb, label in row]
                    for row in message.buttons
                ]
            )
            if message.buttons
            else None
        )
        sent = await self.bot.send_message(
            message.chat_id,
            message.html,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            reply_parameters=(
                ReplyParameters(message.reply_to, allow_sending_without_reply=True)
                if message.reply_to is not None
                else None
            ),
        )
        return int(sent.message_id)

    async def _deliver(
        self,
        row: dict[str, Any],
        messages: Sequence[OutMessage],
        *,
        update_post_of: int | None,
    ) -> None:
        """Send a row's messages not sent yet, recording each one as soon as Telegram took it.

        Progress is committed after every message (not lazily), so a restart resends only
        the pieces Telegram had not accepted; the row is marked sent with its last piece.
        """
        row_id = int(row["id"])
        last: int | None = None
        admin_chat = self.settings.telegram.admin_chat_id
        to_admins = bool(messages) and admin_chat != 0 and messages[0].chat_id == admin_chat
        done = min(Journal.progress(row), len(messages))
        try:
            for index in range(done, len(messages)):
                last = await self.send(messages[index])
                if index + 1 < len(messages):
                    pieces = index + 1
                    await self.group.run(
                        functools.partial(self.journal.mark_progress, row_id, pieces),
                        savepoint=False,
                    )
        except (Forbidden, BadRequest, ChatMigrated) as exc:
            missing = isinstance(exc, Forbidden) or "chat not found" in exc.message.lower()
            if to_admins and missing:
                # The bot is not (yet) in the admin chat: a setting to fix, not a reason to
                # drop the secretariat's post. Keep it and try again later.
                log.warning("cannot post in the admin chat (%s): add the bot to it", exc.message)
                self._retry(row, type(exc).__name__)
            elif isinstance(exc, Forbidden):
                # The user blocked the bot or left: nothing will ever get through.
                log.warning("notification %d refused: %s", row_id, type(exc).__name__)
                self.journal.mark_failed(row_id, "failed", f"forbidden: {exc.message}")
            else:
                log.error("notification %d rejected by Telegram: %s", row_id, exc.message)
                self.journal.mark_failed(row_id, "failed", f"bad request: {exc.message}")
            return
        except (RetryAfter, NetworkError) as exc:
            cause = type(exc).__name__ if isinstance(exc, RetryAfter) else network_cause(exc)
            log.warning("notification %d delayed: %s", row_id, cause)
            self._retry(row, type(exc).__name__)
            return
        message_id = last
        now = self.clock()
        post_of = update_post_of if message_id is not None else None

        def mark() -> None:
            if post_of is not None:
                self.db.execute(
                    "UPDATE enquiries SET admin_message_id = ? WHERE id = ?",
                    [message_id, post_of],
                )
            self.journal.mark_sent(row_id, now, message_id)

        # Joins the next group commit (at most LAZY_WINDOW away): waiting for a commit of its
        # own per message would halve throughput, and a crash in that window only repeats
        # this one message (the update itself is never handled twice).
        self.group.add(mark, savepoint=post_of is not None)

    def _retry(self, row: dict[str, Any], error: str) -> None:
        attempts = int(row.get("attempts") or 0) + 1
        delay = min(NOTIFY_BACKOFF_MAX, NOTIFY_BACKOFF_FIRST * 2 ** min(attempts - 1, 12))
        self.journal.mark_retry(int(row["id"]), self.clock(), error, delay)

    # -- notification worker (scheduler job) ------------------------------------------------

    def kick(self) -> None:
        """Deliver the outbox and due notifications now, without waiting for the jobs."""
        try:
            self.app.kick()
        except Exception as exc:  # the app's own delivery must not break handling
            log.warning("app.kick failed: %s", type(exc).__name__)
        if not self._listening:
            self._kick_notifications()

    def _kick_notifications(self) -> None:
        task = asyncio.create_task(self.deliver_notifications())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def deliver_notifications(self) -> int:
        """Send the due `notifications` rows of this channel; returns how many were handled."""
        if self._notify_lock.locked():
            # A run is going on: make it look again when it ends instead of queueing up.
            self._notify_again = True
            return 0
        handled = 0
        async with self._notify_lock:
            while True:
                self._notify_again = False
                rows = self.journal.due(self.clock())
                # One chat's rows in order, different chats at the same time: a chat paused by
                # a 429 (or a slow one) delays nobody else's notifications.
                per_chat: dict[object, list[dict[str, Any]]] = {}
                for row in rows:
                    key = int(row["chat_id"]) if row.get("chat_id") else "notifications"
                    per_chat.setdefault(key, []).append(row)
                await asyncio.gather(
                    *(self._deliver_chat(key, chat_rows) for key, chat_rows in per_chat.items())
                )
                handled += len(rows)
                if not self._notify_again and len(rows) < 50:
                    return handled

    async def _deliver_chat(self, key: object, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            try:
                await self.queues.run(key, functools.partial(self._deliver_notification, row))
            except Exception as exc:
                # A bug must not turn into a retry every few seconds: back off.
                log.error("notification %s failed: %s", row["id"], type(exc).__name__)
                self._retry(row, type(exc).__name__)

    async def _deliver_notification(self, row: dict[str, Any]) -> None:
        # Re-read inside the chat's queue: a handler may have sent it meanwhile.
        current = self.journal.get(int(row["id"]))
        if current is None or current["status"] != "pending":
            return
        row = current
        kind = row["kind"]
        admin_chat = self.settings.telegram.admin_chat_id
        chat_id = int(row["chat_id"]) if row.get("chat_id") else admin_chat
        if not chat_id:
            self.journal.mark_failed(int(row["id"]), "skipped", "no chat to send to")
            return
        if kind == KIND_REPLY:
            messages = [OutMessage.from_json(item) for item in json.loads(row["text"] or "[]")]
            await self._deliver(row, messages, update_post_of=None)
        elif kind == "enquiry_posted":
            enquiry = self._enquiry(row.get("enquiry_id"))
            if enquiry is None or enquiry.get("erased_at"):
                self.journal.mark_failed(int(row["id"]), "skipped", "enquiry gone or erased")
                return
            post = post_messages(self.settings, self.texts, enquiry, chat_id)
            await self._deliver(row, [post], update_post_of=int(enquiry["id"]))
            self._posts[int(enquiry["id"])] = (post.html, post.buttons)
        elif kind == "answer":
            enquiry = self._enquiry(row.get("enquiry_id"))
            data = {"ref": enquiry["ref"] if enquiry else "", "lang": (enquiry or {}).get("lang")}
            data["text"] = row.get("text") or ""
            await self._deliver(
                row, answer_messages(self.texts, data, chat_id), update_post_of=None
            )
        elif kind == POST_ERASED:
            await self._erase_post(row)
        elif kind == "mail_failed":
            messages = mail_failed_messages(
                self.settings, self.texts, row.get("text") or "", chat_id
            )
            await self._deliver(row, messages, update_post_of=None)
        else:
            self.journal.mark_failed(int(row["id"]), "skipped", f"unknown kind {kind}")

    def _enquiry(self, enquiry_id: Any) -> dict[str, Any] | None:
        if enquiry_id is None:
            return None
        cursor = self.db.execute("SELECT * FROM enquiries WHERE id = ?", [enquiry_id])
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cursor.description], row, strict=True))

    async def _erase_post(self, row: dict[str, Any]) -> None:
        """Edit an erased enquiry's admin-chat post to its erased form (durably: a failed
        edit is retried like any notification)."""
        row_id = int(row["id"])
        enquiry = self._enquiry(row.get("enquiry_id"))
        admin_chat = self.settings.telegram.admin_chat_id
        if enquiry is None or not enquiry.get("admin_message_id") or not admin_chat:
            self.journal.mark_failed(row_id, "skipped", "no admin-chat post to edit")
            return
        post = post_messages(self.settings, self.texts, enquiry, admin_chat)
        markup = InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(label, callback_data=data) for data, label in line]
                for line in post.buttons
            ]
        )
        try:
            await self.bot.edit_message_text(
                post.html,
                chat_id=admin_chat,
                message_id=int(enquiry["admin_message_id"]),
                parse_mode=ParseMode.HTML,
                reply_markup=markup if post.buttons else None,
            )
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():
                # Deleted by staff, or too old to edit: nothing left that shows the data.
                log.info("erased post %d not edited: %s", row_id, exc.message[:80])
                self.journal.mark_failed(row_id, "skipped", f"bad request: {exc.message}")
                return
        except (RetryAfter, NetworkError, Forbidden) as exc:
            log.warning("erased post %d delayed: %s", row_id, type(exc).__name__)
            self._retry(row, type(exc).__name__)
            return
        self._posts[int(enquiry["id"])] = (post.html, post.buttons)
        now = self.clock()
        self.group.add(
            functools.partial(
                self.journal.mark_sent, row_id, now, int(enquiry["admin_message_id"])
            ),
            savepoint=False,
        )

    async def refresh_post(self, enquiry_id: int) -> None:
        """Show an enquiry's new status (and the buttons that still apply) on its post."""
        enquiry = self._enquiry(enquiry_id)
        admin_chat = self.settings.telegram.admin_chat_id
        if enquiry is None or not enquiry.get("admin_message_id") or not admin_chat:
            return
        post = post_messages(self.settings, self.texts, enquiry, admin_chat)
        shown = (post.html, post.buttons)
        if self._posts.get(enquiry_id) == shown:
            # Telegram refuses an edit that changes nothing ("message is not modified").
            return
        markup = InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(label, callback_data=data) for data, label in row]
                for row in post.buttons
            ]
        )
        try:
            await self.bot.edit_message_text(
                post.html,
                chat_id=admin_chat,
                message_id=int(enquiry["admin_message_id"]),
                parse_mode=ParseMode.HTML,
                reply_markup=markup if post.buttons else None,
            )
            self._posts[enquiry_id] = shown
        except BadRequest as exc:
            # "message is not modified" (already current) or deleted by staff: fine either way.
            log.info("post refresh skipped: %s", exc.message[:80])
        except TelegramError as exc:
            log.warning("post refresh failed: %s", type(exc).__name__)
