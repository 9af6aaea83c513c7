"""What the Telegram channel asks of the deliveries queue: send a handler's reply at once
(from the chat's queue, as stored), refresh an admin-chat post, wake the worker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import sqlite_utils
from telegram import Bot
from telegram.error import BadRequest, TelegramError

from bot import enquiries
from bot.channels.telegram_admin import post_messages
from bot.channels.telegram_commit import GroupCommit
from bot.channels.telegram_journal import OutMessage
from bot.channels.telegram_render import ChannelTexts
from bot.channels.telegram_transport import TelegramTransport
from bot.deliveries import store
from bot.deliveries.model import Delivery, Sent
from bot.deliveries.worker import Worker
from bot.settings import Settings

log = logging.getLogger(__name__)


class TelegramDeliveries:
    """What the channel asks of the queue: send a reply now, refresh a post, wake the worker."""

    def __init__(
        self,
        settings: Settings,
        app: Any,
        bot: Bot,
        *,
        texts: ChannelTexts,
        group: GroupCommit,
    ) -> None:
        self.settings = settings
        # bot.app.App (started): its database, worker and kick().
        self.app = app
        self.db: sqlite_utils.Database = app.db
        self.bot = bot
        self.texts = texts
        self.group = group
        self.worker: Worker | None = app.worker
        self.transport = TelegramTransport(self.db, settings, bot, texts, progress=self._progress)
        if self.worker is not None:
            self.worker.register(self.transport)

    @property
    def owner(self) -> str | None:
        """Who claims this process's replies (None: another process delivers)."""
        return self.worker.owner if self.worker is not None else None

    async def _progress(self, delivery: Delivery, pieces: int) -> None:
        owner = delivery.lease_owner or ""
        await self.group.run(
            lambda: store.record_progress(self.db, delivery.id, owner, pieces), savepoint=False
        )

    async def deliver_reply(
        self, delivery: Delivery | None, messages: Sequence[OutMessage]
    ) -> None:
        """Send the replies just stored (claimed by this process, `delivery`) at once; None
        (stored for the process that delivers): wake that one."""
        if delivery is None or self.worker is None:
            self.kick()
            return
        # The sent mark joins the next group commit: a commit of its own per message would
        # halve throughput, and a crash in that window only repeats this one message.
        outcome = await self.worker.send_claimed(
            delivery,
            defer=self._defer,
            attempt=lambda: self.transport.send_rendered(delivery, messages),
        )
        if not isinstance(outcome, Sent):
            # A retry to schedule, or a report the domain queued: the worker takes over.
            self.kick()

    def _defer(self, work: Callable[[], None]) -> None:
        self.group.add(work, savepoint=True)

    def kick(self) -> None:
        """Wake the worker (a commit queued something)."""
        try:
            self.app.kick()
        except Exception as exc:  # the app's own delivery must not break handling
            log.warning("app.kick failed: %s", type(exc).__name__)

    def add_jobs(self, scheduler: Any) -> None:
        """Nothing to schedule: the app's worker wakes on kicks and at due attempts."""

    async def close(self) -> None:
        """The app's worker stops with the app."""

    async def refresh_post(self, enquiry_id: int) -> None:
        """Show an enquiry's new status (and the buttons that still apply) on its post."""
        enquiry = enquiries.enquiry_by_id(self.db, enquiry_id)
        admin_chat = self.transport.admin_chat()
        if enquiry is None or not enquiry.get("admin_message_id") or not admin_chat:
            return
        post = post_messages(self.settings, self.texts, enquiry, admin_chat)
        shown = (post.html, post.buttons)
        if self.transport.posts.get(enquiry_id) == shown:
            # Telegram refuses an edit that changes nothing ("message is not modified").
            return
        try:
            await self.transport.edit_post(post, admin_chat, int(enquiry["admin_message_id"]))
            self.transport.posts[enquiry_id] = shown
        except BadRequest as exc:
            # "message is not modified" (already current) or deleted by staff: fine either way.
            log.info("post refresh skipped: %s", exc.message[:80])
        except TelegramError as exc:
            log.warning("post refresh failed: %s", type(exc).__name__)
