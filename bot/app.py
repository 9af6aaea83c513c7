"""The running application: database, knowledge base, mail store and the one scheduler."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bot import jobs
from bot.mail.outbox import DeliveryReport, SmtpTarget, count_mails, deliver_due
from bot.storage import open_database, utc_now

if TYPE_CHECKING:
    import sqlite_utils

    from bot.mail.store import MailStore
    from bot.settings import Settings

log = logging.getLogger(__name__)

OUTBOX_JOB = "outbox"
REMINDERS_JOB = "reminders"
DIGEST_JOB = "digest"
RETENTION_JOB = "retention"
INBOX_JOB = "inbox"


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
        self._delivery_lock = asyncio.Lock()
        self._kicked = False
        self._kick_listeners: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

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
        self.db = open_database(settings.database_path)
        try:
            self.kb = KnowledgeBase.from_settings(settings)
            if not settings.smtp.host:
                from bot.mail.store import MailStore

                self.mail_store = MailStore(settings.mail_dir, report=self._stored)
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
            self._add_jobs()
            self.scheduler.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop the scheduler and its running jobs, the mail store, and close the database."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            # AsyncIOScheduler.shutdown only schedules itself on the loop: let it run.
            await asyncio.sleep(0)
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.mail_store is not None:
            await self.mail_store.stop()
        if self.db is not None:
            self.db.close()
            self.db = None

    # ------------------------------------------------------------ jobs

    def _add_jobs(self) -> None:
        # All jobs derive what is due from the database, so running late is harmless and
        # running twice in a row is pointless: coalesce=True folds missed runs into one, and
        # misfire_grace_time=None runs a late job however late (3.x defaults to 1 s and would
        # silently drop it after a stall or a suspend). max_instances=1: never overlap.
        periodic = {"coalesce": True, "misfire_grace_time": None, "max_instances": 1}
        now = datetime.now(UTC)
        self.scheduler.add_job(
            self._tracked(self.deliver_outbox),
            "interval",
            seconds=jobs.OUTBOX_EVERY.total_seconds(),
            id=OUTBOX_JOB,
            next_run_time=now,
            replace_existing=True,
            **periodic,
        )
        self.scheduler.add_job(
            self._tracked(self.run_reminders),
            "interval",
            seconds=jobs.REMINDERS_EVERY.total_seconds(),
            id=REMINDERS_JOB,
            next_run_time=now,
            replace_existing=True,
            **periodic,
        )
        self.scheduler.add_job(
            self._tracked(self.run_retention),
            "interval",
            seconds=jobs.RETENTION_EVERY.total_seconds(),
            id=RETENTION_JOB,
            next_run_time=now,
            replace_existing=True,
            **periodic,
        )
        # The cron job serves each slot once (the database records the last slot served);
        # a grace of DIGEST_CATCH_UP lets a stalled loop still send it late, once.
        self.scheduler.add_job(
            self._tracked(self.run_digest),
            jobs.digest_trigger(self.settings),
            id=DIGEST_JOB,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=int(jobs.DIGEST_CATCH_UP.total_seconds()),
            max_instances=1,
        )
        if self.settings.inbox.configured:
            # One long-lived job: IDLE (or polling) with its own reconnects and backoff.
            self.scheduler.add_job(
                self._tracked(self.watch_inbox),
                "date",
                run_date=now,
                id=INBOX_JOB,
                replace_existing=True,
                misfire_grace_time=None,
            )
        # At start, catch up a digest slot missed while the bot was down.
        self.scheduler.add_job(
            self._tracked(self.catch_up_digest),
            "date",
            run_date=now,
            id=f"{DIGEST_JOB}-catch-up",
            replace_existing=True,
            misfire_grace_time=None,
        )

    def _tracked(
        self, func: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """Wrap a job so that close() can cancel it and its errors are logged briefly."""

        async def job() -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                await func()
            except asyncio.CancelledError:
                # Only close() cancels jobs: end quietly instead of APScheduler logging the
                # cancellation as a job error. The database state is consistent either way.
                return
            except Exception:
                log.exception("job %s failed", getattr(func, "__name__", "?"))
            finally:
                if task is not None:
                    self._tasks.discard(task)

        job.__name__ = getattr(func, "__name__", "job")
        return job

    def _require_db(self) -> sqlite_utils.Database:
        if self.db is None:
            raise RuntimeError("the app is not started")
        return self.db

    async def deliver_outbox(self) -> DeliveryReport:
        """Deliver every due outbox row now (again if kicked meanwhile)."""
        db = self._require_db()
        assert self.smtp_target is not None
        total = DeliveryReport()
        async with self._delivery_lock:
            while True:
                self._kicked = False
                report = await deliver_due(db, self.settings, self.clock(), target=self.smtp_target)
                total.add(report)
                self._report_delivery(report)
                if not (report.more_due or self._kicked):
                    break
        return total

    async def watch_inbox(self) -> None:
        """Read the secretariat's e-mail replies from the bot's mailbox until stopped."""
        from bot.mail.inbound.imap import InboxWatcher

        watcher = InboxWatcher(
            self._require_db(),
            self.settings,
            clock=self.clock,
            on_result=self._inbound_processed,
            tls_context=self.imap_tls_context,
        )
        await watcher.run()

    def _inbound_processed(self, result: Any) -> None:
        if result.relayed:
            self._say(f"e-mail answer to {result.ref} received; relaying it")
            self.kick()

    async def run_reminders(self) -> list[str]:
        """Queue due reminders; deliver them at once."""
        refs = jobs.send_reminders(self._require_db(), self.settings, self.clock())
        if refs:
            self.kick()
        return refs

    async def run_digest(self, catch_up: bool = False) -> jobs.DigestResult | None:
        """Serve the current digest slot if it was not served yet."""
        result = jobs.run_scheduled_digest(
            self._require_db(), self.settings, self.clock(), catch_up=catch_up
        )
        if result is not None and result.outbox_id is not None:
            self.kick()
        return result

    async def catch_up_digest(self) -> jobs.DigestResult | None:
        """At start: serve a digest slot missed while the bot was down."""
        return await self.run_digest(catch_up=True)

    async def run_retention(self) -> int:
        """Erase personal data whose retention expired."""
        return jobs.apply_retention(self._require_db(), self.settings, self.clock())

    # ------------------------------------------------------------ kicks and reports

    def add_kick_listener(self, callback: Callable[[], None]) -> None:
        """Also call `callback` on every kick (e.g. a channel's notification worker)."""
        self._kick_listeners.append(callback)

    def kick(self) -> None:
        """Deliver the outbox now: call after a commit (from the loop, or any thread)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Called from another thread: hop onto the app's loop.
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.kick)
            return
        self._kicked = True
        for callback in self._kick_listeners:
            try:
                callback()
            except Exception:
                log.exception("kick listener failed")
        if self.db is None or self._delivery_lock.locked():
            # A delivery in progress loops once more and picks the new rows up.
            return
        # A task of its own rather than a scheduler run: the periodic job may be running,
        # and APScheduler would skip (and warn about) a second instance.
        self._tasks.add(loop.create_task(self._tracked(self.deliver_outbox)()))

    def _say(self, text: str) -> None:
        if self.report is not None:
            try:
                self.report(text)
            except Exception:
                log.exception("report callback failed")

    def _stored(self, path: Path) -> None:
        self._say(f"e-mail saved to {_display_path(path)}")

    def _report_delivery(self, report: DeliveryReport) -> None:
        if self.mail_store is None and report.sent:
            target = self.smtp_target
            where = f"{target.hostname}:{target.port}" if target else "the mail server"
            self._say(f"{count_mails(report.sent)} handed to {where}")
        if report.retried:
            self._say(f"{count_mails(report.retried)} not delivered yet, will retry")
        if report.failed:
            self._say(
                f"{count_mails(report.failed)} refused permanently: see 'clusterbot outbox list'"
            )
