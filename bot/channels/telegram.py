"""The Telegram channel: python-telegram-bot 22 handlers as thin adapters over the engine.

This module assembles the channel and runs it; each concern lives in its own module:

- telegram_updates.py       receiving: journal, per-chat queues, replay, quarantine of
                            updates that keep failing
- telegram_polling.py       long polling (getUpdates -> accept, then the next offset)
- telegram_menus.py         the command menus
- telegram_webhook.py       webhook mode (the same journal-first `accept`)
- telegram_handling.py      what every handler shares: commit effects + replies + handled
                            mark in one transaction, then send
- telegram_applicant.py     applicants: private chats and buttons -> the dialogue engine
- telegram_admin_handlers.py  the secretariat: admin chat, admin commands and buttons
- telegram_admin.py         what admin actions do, and the admin chat's posts
- telegram_transport.py    the deliveries queue's Telegram transport (replies, posts, answers)
- telegram_render.py        HTML, splitting, keyboards, the channel's texts
- telegram_limits.py        flood limits (settings) and retries, a PTB rate limiter
- telegram_journal.py       the SQL of the journal and the outgoing rows
- telegram_commit.py        group commit (one fsync for concurrent handlers, off the loop)
- telegram_deliveries.py    what the channel asks of the queue (send a reply now, refresh)
- telegram_http.py          the HTTP seam: PTB's request interface on aiohttp
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlite_utils
from telegram.error import InvalidToken, NetworkError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    MessageHandler,
    filters,
)

from bot.channels.telegram_admin import AdminCommands
from bot.channels.telegram_admin_handlers import AdminCommand, AdminHandlers, is_admin_button
from bot.channels.telegram_applicant import ApplicantHandlers, render_replies, split_command
from bot.channels.telegram_commit import GroupCommit
from bot.channels.telegram_deliveries import TelegramDeliveries
from bot.channels.telegram_handling import Handling
from bot.channels.telegram_http import AiohttpRequest
from bot.channels.telegram_journal import Journal
from bot.channels.telegram_limits import MAX_IN_FLIGHT, FloodControl
from bot.channels.telegram_menus import CommandMenus
from bot.channels.telegram_polling import POLL_BACKOFF_MAX, POLL_READ_MARGIN, POLL_TIMEOUT, Poller
from bot.channels.telegram_queues import ChatQueues
from bot.channels.telegram_render import BOTFATHER_HELP, ChannelTexts
from bot.channels.telegram_updates import ALLOWED_UPDATES, UpdateIntake
from bot.channels.telegram_webhook import Webhook, WebhookError
from bot.dialogue.engine import Engine
from bot.logs import network_cause
from bot.settings import Settings
from bot.storage import utc_now

log = logging.getLogger(__name__)

# Chats handled at the same time (updates of one chat always run one after another). A chat
# waiting for its flood limit holds a slot, so this is large; FloodControl bounds the
# requests actually on the wire (MAX_IN_FLIGHT).
MAX_CONCURRENT_CHATS = 2048
# Sockets to the Bot API: no more than FloodControl lets fly at once.
CONNECTION_POOL = MAX_IN_FLIGHT
PRUNE_EVERY = timedelta(hours=6)
PRUNE_JOB = "telegram-journal-prune"
# Seconds to let running handlers finish on SIGINT/SIGTERM; the journal (unhandled updates
# are replayed) and the reply rows (unsent messages are resent) cover what is cut off.
STOP_GRACE = 3.0


class TelegramSetupError(Exception):
    """A problem the operator must fix (no token, a token Telegram refuses)."""


def build_application(
    settings: Settings, flood: FloodControl | None = None
) -> Application[Any, Any, Any, Any, Any, Any]:
    """A PTB Application with our rate limiter, aiohttp requests and no Updater (we poll
    ourselves)."""
    token = settings.telegram.token.strip()
    if not token:
        raise TelegramSetupError(BOTFATHER_HELP)
    base_url = settings.telegram.base_url
    file_url = base_url[: -len("/bot")] + "/file/bot" if base_url.endswith("/bot") else base_url
    return (
        ApplicationBuilder()
        .token(token)
        .base_url(base_url)
        .base_file_url(file_url)
        .updater(None)
        .rate_limiter(flood or FloodControl.from_settings(settings.telegram))
        .request(AiohttpRequest(CONNECTION_POOL, pool_timeout=30.0))
        .get_updates_request(AiohttpRequest(read_timeout=POLL_TIMEOUT + POLL_READ_MARGIN))
        .build()
    )


class TelegramChannel:
    """The bot: wires the channel's parts together and runs them until stop()."""

    def __init__(
        self,
        settings: Settings,
        app: Any,
        *,
        clock: Callable[[], datetime] = utc_now,
        flood: FloodControl | None = None,
    ) -> None:
        self.settings = settings
        # bot.app.App (started): its database, knowledge base, scheduler and kick().
        self.app = app
        self.db: sqlite_utils.Database = app.db
        self.clock = clock
        self.texts = ChannelTexts.load()
        self.journal = Journal(self.db)
        self.group = GroupCommit(self.db)
        self.application = build_application(settings, flood)
        bot = self.application.bot
        self.queues = ChatQueues(MAX_CONCURRENT_CHATS)
        self._stop = asyncio.Event()
        self.notifications = TelegramDeliveries(
            settings, app, bot, texts=self.texts, group=self.group
        )
        self.journal.owner = self.notifications.owner
        self.handling = Handling(
            self.db,
            settings,
            bot,
            texts=self.texts,
            journal=self.journal,
            group=self.group,
            notifications=self.notifications,
            clock=clock,
        )
        self.engine = Engine(
            self.db, app.kb, settings, clock=clock, on_commit=self.handling.on_commit
        )
        self.applicant = ApplicantHandlers(self.handling, self.engine, bot, self.texts)
        self.admin = AdminHandlers(
            self.handling, AdminCommands(self.db, settings, self.texts), settings, bot, clock
        )
        self.intake = UpdateIntake(
            self.db,
            settings,
            self.application,
            texts=self.texts,
            journal=self.journal,
            group=self.group,
            queues=self.queues,
            handling=self.handling,
            notifications=self.notifications,
            clock=clock,
            stop=self._stop,
        )
        self.menus = CommandMenus(settings, bot, self.texts)
        self.poller = Poller(bot, self.intake.receive, self._stop)
        self.webhook = Webhook(
            settings, bot, self.intake.accept, self.health, allowed_updates=ALLOWED_UPDATES
        )
        self._add_handlers()

    def _add_handlers(self) -> None:
        """Which handler takes which update: first match wins."""
        application = self.application
        admin_chat = self.settings.telegram.admin_chat_id
        if admin_chat:
            application.add_handler(
                MessageHandler(filters.Chat(chat_id=admin_chat), self.admin.on_admin_chat)
            )
        application.add_handler(
            MessageHandler(filters.ChatType.PRIVATE & AdminCommand(), self.admin.on_command)
        )
        application.add_handler(MessageHandler(filters.ChatType.PRIVATE, self.applicant.on_private))
        application.add_handler(MessageHandler(filters.ALL, self.applicant.on_group))
        application.add_handler(CallbackQueryHandler(self.admin.on_button, pattern=is_admin_button))
        application.add_handler(CallbackQueryHandler(self.applicant.on_button))
        application.add_error_handler(self.handling.on_error)

    # -- receiving (see telegram_updates.py) ----------------------------------------------------

    def accept(self, payloads: Any) -> None:
        """Journal updates (committed before return), then queue the unhandled ones."""
        self.intake.accept(payloads)

    def replay(self) -> int:
        """Queue journaled updates that a previous run fetched but did not handle."""
        return self.intake.replay()

    def health(self) -> dict[str, Any]:
        """What GET /healthz reports."""
        return {
            "ok": True,
            "unhandled_updates": self.intake.unhandled_count(),
            "stopping": self._stop.is_set(),
        }

    # -- start-up and shutdown ------------------------------------------------------------------

    async def initialize(self) -> bool:
        """Check the token with getMe, retrying while Telegram is unreachable; False if stopped."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                await self.application.initialize()
                return True
            except InvalidToken as exc:
                raise TelegramSetupError(
                    "Telegram refused the bot token (telegram.token / TELEGRAM_BOT_TOKEN); "
                    "check it, or get a new one from @BotFather"
                ) from exc
            except NetworkError as exc:
                log.warning(
                    "Telegram unreachable (%s); retrying in %.0fs", network_cause(exc), delay
                )
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    delay = min(POLL_BACKOFF_MAX, delay * 2)
        return False

    def add_jobs(self, scheduler: Any) -> None:
        """The notification worker and journal pruning on the app's scheduler."""
        self.notifications.add_jobs(scheduler)
        scheduler.add_job(
            self._prune,
            "interval",
            seconds=PRUNE_EVERY.total_seconds(),
            id=PRUNE_JOB,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )

    async def _prune(self) -> None:
        self.journal.prune(self.clock())

    def stop(self) -> None:
        """Ask run() to return (signal handlers call this)."""
        self._stop.set()

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        """Run until stop(): start-up, replay, polling or webhook, graceful shutdown."""
        if not await self.initialize():
            return
        try:
            self.add_jobs(self.app.scheduler)
            self.intake.replay()
            self.notifications.kick()
            receiver: asyncio.Task[None] | None = None
            if self.settings.telegram.webhook_url:
                try:
                    await self.webhook.start()
                except WebhookError as exc:
                    raise TelegramSetupError(str(exc)) from exc
            else:
                await self.webhook.drop()
                receiver = asyncio.create_task(self.poller.poll(), name="telegram-polling")
            # Cosmetic, and retried on 5xx: never in the way of replay and polling.
            self.intake.spawn(self.menus.set_in_background())
            if ready is not None:
                ready()
            stopper = asyncio.create_task(self._stop.wait())
            waiting: set[asyncio.Task[Any]] = {stopper}
            if receiver is not None:
                waiting.add(receiver)
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if receiver is not None:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
            stopper.cancel()
            if receiver is not None and receiver in done and receiver.exception():
                raise TelegramSetupError(
                    "Telegram refused the bot token while polling; get a new one from @BotFather"
                )
        finally:
            await self._wind_down()

    async def _wind_down(self) -> None:
        try:
            self.webhook.stop()
            if not await self.queues.drain(STOP_GRACE):
                log.warning("stopping with updates still being handled; they will be replayed")
                await self.queues.cancel()
            await self.intake.close()
            # The app closes the database after us: no job of ours may still be running then.
            with contextlib.suppress(Exception):
                self.app.scheduler.remove_job(PRUNE_JOB)
            await self.notifications.close()
        finally:
            # Whatever joined the last group commit goes to disk before the app closes.
            self.group.close()
            try:
                await self.application.shutdown()
            except Exception as exc:
                log.warning("shutdown: %s", type(exc).__name__)


def describe(settings: Settings) -> str:
    """One log line about the mode, without the token."""
    mode = "webhook" if settings.telegram.webhook_url else "long polling"
    return f"telegram: {mode} via {urlsplit(settings.telegram.base_url).netloc}"


__all__ = [
    "BOTFATHER_HELP",
    "TelegramChannel",
    "TelegramSetupError",
    "build_application",
    "describe",
    "render_replies",
    "split_command",
]
