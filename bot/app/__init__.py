"""The running application: database, knowledge base, mail store and the one scheduler.

`App` (here) opens and closes them and is told of every change (`kick`); the delivery
worker's loop is delivery.py, the scheduler's jobs schedule.py.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bot import instance
from bot.app.delivery import DeliveryLoop
from bot.app.schedule import ScheduledJobs
from bot.deliveries.model import DeliveryReport
from bot.deliveries.smtp import SmtpTarget
from bot.deliveries.worker import Worker
from bot.storage import Database, make_private, open_database, utc_now

if TYPE_CHECKING:
    import sqlite_utils

    from bot.mail.store import MailStore
    from bot.settings import Settings

log = logging.getLogger(__name__)


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class App:
    """Async context manager owning the database, the mail store and the scheduler."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        report: Callable[[str], None] | None = None,
        smtp_tls_context: ssl.SSLContext | None = None,
        imap_tls_context: ssl.SSLContext | None = None,
        deliver: bool | None = None,
    ) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.settings = settings
        self.clock = clock
        self.report = report
        self.smtp_tls_context = smtp_tls_context
        self.imap_tls_context = imap_tls_context
        # Created here, started on enter: channels may add their jobs before or after.
        self.scheduler: Any = AsyncIOScheduler(timezone=UTC)
        self.db: sqlite_utils.Database | None = None
        self.kb: Any = None
        self.mail_store: MailStore | None = None
        self.smtp_target: SmtpTarget | None = None
        # None: deliver unless another process holds the data directory (`clusterbot
        # run`), in which case that process delivers and this one only queues.
        self._deliver = deliver
        self.instance_holder: int | None = None
        # Set on start when this process delivers (`worker` is its worker).
        self.delivery: DeliveryLoop | None = None
        self.worker: Worker | None = None
        self.jobs = ScheduledJobs(self)
        self._kick_listeners: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set when the app must stop (its database file vanished): one line saying why.
        self.fatal: str | None = None
        self._stop_listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the database, load the knowledge base, start the mail store and the jobs."""
        from bot.knowledge import KnowledgeBase

        settings = self.settings
        self._loop = asyncio.get_running_loop()
        for fixed in make_private(settings.data_dir):
            log.warning("made private (was readable by other users): %s", fixed)
        self.db = open_database(settings.database_path)
        if isinstance(self.db, Database):
            # Every write transaction checks the file is still the one opened (storage).
            self.db.lost_listeners.append(self._database_lost)
        try:
            self.kb = KnowledgeBase.from_settings(settings)
            if settings.smtp.embedded:
                from bot.mail.store import MailStore, erase_stored_mail

                self.mail_store = MailStore(settings.mail_dir, report=self._stored)
                if isinstance(self.db, Database):
                    mail_dir = settings.mail_dir
                    self.db.erase_hooks.append(lambda refs: erase_stored_mail(mail_dir, refs))
                host, port = await self.mail_store.start()
                # The real client code path, in clear on loopback only.
                self.smtp_target = SmtpTarget.from_settings(
                    settings, hostname=host, port=port, security="none"
                )
            else:
                self.smtp_target = SmtpTarget.from_settings(
                    settings, tls_context=self.smtp_tls_context
                )
            from bot.mail.compose import warm_up

            for problem in warm_up(settings):
                log.warning("%s; run 'clusterbot check'", problem)
            self._start_worker()
            self.jobs.add()
            self.scheduler.start()
        except BaseException:
            await self.close()
            raise

    def _start_worker(self) -> None:
        assert self.db is not None and self.smtp_target is not None
        deliver = self._deliver
        if deliver is None:
            self.instance_holder = instance.holder(self.settings)
            deliver = self.instance_holder is None
        if not deliver:
            return
        self.delivery = DeliveryLoop(
            self.db,
            self.settings,
            self.smtp_target,
            clock=self.clock,
            embedded=self.mail_store is not None,
            say=self.say,
            after_pass=self.jobs.after_delivery,
            after_failure=self.jobs.schedule_deliveries,
        )
        self.worker = self.delivery.worker
        self.delivery.start()

    async def close(self) -> None:
        """Stop the scheduler and its running jobs, the mail store, and close the database."""
        if self.delivery is not None:
            self.delivery.stop_waking()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            # AsyncIOScheduler.shutdown only schedules itself on the loop: let it run.
            await asyncio.sleep(0)
        tasks = self.jobs.running()
        delivering = self.delivery.task if self.delivery is not None else None
        if delivering is not None and not delivering.done():
            tasks.append(delivering)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.delivery is not None:
            self.delivery.close()
        if self.mail_store is not None:
            await self.mail_store.stop()
        if self.db is not None:
            self.db.close()
            self.db = None

    def require_db(self) -> sqlite_utils.Database:
        """The open database; raises RuntimeError before start."""
        if self.db is None:
            raise RuntimeError("the app is not started")
        return self.db

    async def deliver(self) -> DeliveryReport:
        """Deliver every due delivery now (the worker's pass); the report."""
        self.require_db()
        if self.delivery is None:
            return DeliveryReport()
        return await self.delivery.deliver()

    # ------------------------------------------------------------ stopping

    def add_stop_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the app's loop) when the app must stop; see `fatal`."""
        self._stop_listeners.append(callback)

    def _database_lost(self, reason: str) -> None:
        if self.fatal is not None:
            return
        self.fatal = reason
        log.critical("%s", reason)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for callback in self._stop_listeners:
            if running is loop:
                callback()
            else:
                loop.call_soon_threadsafe(callback)

    # ------------------------------------------------------------ kicks and reports

    def add_kick_listener(self, callback: Callable[[], None]) -> None:
        """Also call `callback` on every kick (the Telegram channel's notification worker,
        until its messages join the deliveries queue)."""
        self._kick_listeners.append(callback)

    def kick(self) -> None:
        """Something was committed: deliver what it queued and re-derive the reminder
        time. Call after a commit (from the loop, or any thread)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Called from another thread: hop onto the app's loop.
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.kick)
            return
        if self.db is None:
            return
        try:
            self.jobs.schedule_reminders()
        except Exception:
            log.exception("scheduling reminders failed")
        for callback in self._kick_listeners:
            try:
                callback()
            except Exception:
                log.exception("kick listener failed")
        if self.delivery is not None:
            self.delivery.wake()
        elif self.instance_holder is not None:
            # Another process (`clusterbot run`) delivers: tell it there is work.
            instance.notify(self.settings)

    def say(self, text: str) -> None:
        """Tell the operator (the `report` callback), if anyone listens."""
        if self.report is not None:
            try:
                self.report(text)
            except Exception:
                log.exception("report callback failed")

    def _stored(self, path: Path) -> None:
        self.say(f"e-mail saved to {_display_path(path)}")
