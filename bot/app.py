"""The running application: database, knowledge base, mail store and the one scheduler."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bot import instance
from bot.deliveries import store
from bot.deliveries.model import DeliveryReport
from bot.deliveries.smtp import SmtpTarget, SmtpTransport, count_mails
from bot.deliveries.worker import Worker
from bot.jobs.digest import DIGEST_CATCH_UP, DigestResult, digest_trigger, run_scheduled_digest
from bot.jobs.reminders import next_reminder_at, send_reminders
from bot.jobs.retention import RETENTION_EVERY, apply_retention
from bot.storage import (
    Database,
    DatabaseFileLost,
    make_private,
    open_database,
    transaction,
    utc_now,
)

if TYPE_CHECKING:
    import sqlite_utils

    from bot.mail.store import MailStore
    from bot.settings import Settings

log = logging.getLogger(__name__)

DELIVERIES_JOB = "deliveries"
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
        self.worker: Worker | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._kick_listeners: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
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
            self._add_jobs()
            self.scheduler.start()
        except BaseException:
            await self.close()
            raise

    def _start_worker(self) -> None:
        from bot.enquiries import DeliveryRules

        assert self.db is not None and self.smtp_target is not None
        deliver = self._deliver
        if deliver is None:
            self.instance_holder = instance.holder(self.settings)
            deliver = self.instance_holder is None
        if not deliver:
            return
        self.worker = Worker(
            self.db,
            [SmtpTransport(self.smtp_target, on_connect=self._record_smtputf8)],
            hook=DeliveryRules(self.settings),
            clock=self.clock,
            caps={("smtp", "enquiry"): self.settings.enquiries.max_mails_per_hour},
        )
        store.add_enqueue_listener(self._enqueued)
        task = asyncio.get_running_loop().create_task(self._delivery_loop())
        self._tasks.add(task)
        # Whatever is due already (queued while the bot was down) goes out now.
        self._wake.set()

    def _record_smtputf8(self, offered: bool) -> None:
        """What the mail server's EHLO said about SMTPUTF8, for the form (bot.mail.smtputf8)."""
        from bot.mail.smtputf8 import record_smtputf8

        if self.db is not None and self.settings.smtp.host:
            with transaction(self.db):
                record_smtputf8(self.db, self.settings, offered)

    async def close(self) -> None:
        """Stop the scheduler and its running jobs, the mail store, and close the database."""
        self._closing = True
        self._wake.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            # AsyncIOScheduler.shutdown only schedules itself on the loop: let it run.
            await asyncio.sleep(0)
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.worker is not None:
            store.remove_enqueue_listener(self._enqueued)
            self.worker.close()
        if self.mail_store is not None:
            await self.mail_store.stop()
        if self.db is not None:
            self.db.close()
            self.db = None

    # ------------------------------------------------------------ jobs

    def _add_jobs(self) -> None:
        # Every job derives what is due from the database. The periodic ones fold missed
        # runs into one (coalesce), run however late (misfire_grace_time=None; 3.x would
        # drop a job 1 s late after a stall) and never overlap (max_instances=1).
        now = datetime.now(UTC)
        self.scheduler.add_job(
            self._tracked(self.run_retention),
            "interval",
            seconds=RETENTION_EVERY.total_seconds(),
            id=RETENTION_JOB,
            next_run_time=now,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=None,
            max_instances=1,
        )
        # The cron job serves each slot once (the database records the last slot served);
        # a grace of DIGEST_CATCH_UP lets a stalled loop still send it late, once.
        self.scheduler.add_job(
            self._tracked(self.run_digest),
            digest_trigger(self.settings),
            id=DIGEST_JOB,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=int(DIGEST_CATCH_UP.total_seconds()),
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
        self._schedule_reminders()

    def _at(self, moment: datetime) -> datetime:
        # The app's clock may be a test's: a job due `moment` (app time) runs after the
        # same delay of real time.
        delay = max((moment - self.clock()).total_seconds(), 0.0)
        return datetime.now(UTC) + timedelta(seconds=delay)

    def _schedule_reminders(self) -> None:
        """One date job at the instant the next reminder is due, derived from the rows.

        Re-derived at start, after every change (kick) and after each run: a restart
        neither loses nor repeats a reminder, because the reminder and its counter are
        written in one transaction.
        """
        if self.db is None:
            return
        due = next_reminder_at(self.db, self.settings)
        if due is None:
            if self.scheduler.get_job(REMINDERS_JOB) is not None:
                self.scheduler.remove_job(REMINDERS_JOB)
            return
        self.scheduler.add_job(
            self._tracked(self.run_reminders),
            "date",
            run_date=self._at(due),
            id=REMINDERS_JOB,
            replace_existing=True,
            misfire_grace_time=None,
        )

    def _schedule_deliveries(self) -> None:
        """Wake the worker when the next delivery is due (a retry, a capped mail)."""
        if self.db is None or self.worker is None:
            return
        due = self.worker.next_wake()
        if due is None:
            if self.scheduler.get_job(DELIVERIES_JOB) is not None:
                self.scheduler.remove_job(DELIVERIES_JOB)
            return
        self.scheduler.add_job(
            self._wake_worker,
            "date",
            run_date=self._at(due),
            id=DELIVERIES_JOB,
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
            except DatabaseFileLost:
                # Said once by _database_lost; the app is stopping.
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

    async def deliver(self) -> DeliveryReport:
        """Deliver every due delivery now (the worker's pass); the report."""
        self._require_db()
        if self.worker is None:
            return DeliveryReport()
        report = await self.worker.deliver_due()
        self._report_delivery(report)
        # Sent enquiry mails start their reminder clocks; retries set the next wake.
        self._schedule_reminders()
        self._schedule_deliveries()
        return report

    async def _delivery_loop(self) -> None:
        # Wakes on kick() (a delivery was queued, here or, via SIGUSR1, by a command) and
        # at the next due attempt (a date job): never on a fixed poll.
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            if self._closing:
                break
            try:
                await self.deliver()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery run failed")
                # Not at once again: the next due attempt, or the next kick.
                self._schedule_deliveries()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # A library swallowed our cancellation (close() is waiting): end anyway.
                break

    def _enqueued(self, transport: str) -> None:
        # A delivery was queued (inside some transaction): the worker runs on the loop's
        # next turn, never inside this call.
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.call_soon(self._wake.set)
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def _wake_worker(self) -> None:
        self._wake.set()

    async def watch_inbox(self) -> None:
        """Read the secretariat's e-mail replies from the bot's mailbox until stopped."""
        from bot.mail.inbound.watcher import InboxWatcher

        watcher = InboxWatcher(
            self._require_db(),
            self.settings,
            clock=self.clock,
            on_result=self._inbound_processed,
            tls_context=self.imap_tls_context,
        )
        await watcher.run()

    def _inbound_processed(self, result: Any) -> None:
        if result.duplicate:
            return
        if result.relayed:
            self._say(f"e-mail answer to {result.ref} received; relaying it")
        if result.status in ("answer", "follow_up", "bounce"):
            # It queued mail (or failed one) and changed when reminders are due.
            self.kick()

    async def run_reminders(self) -> list[str]:
        """Queue due reminders; deliver them at once; schedule the next one."""
        refs = send_reminders(self._require_db(), self.settings, self.clock())
        self.kick()
        return refs

    async def run_digest(self, catch_up: bool = False) -> DigestResult | None:
        """Serve the current digest slot if it was not served yet."""
        result = run_scheduled_digest(
            self._require_db(), self.settings, self.clock(), catch_up=catch_up
        )
        if result is not None and result.delivery_id is not None:
            self.kick()
        return result

    async def catch_up_digest(self) -> DigestResult | None:
        """At start: serve a digest slot missed while the bot was down."""
        return await self.run_digest(catch_up=True)

    async def run_retention(self) -> int:
        """Erase personal data whose retention expired (stored mail files included)."""
        now = self.clock()
        count = apply_retention(self._require_db(), self.settings, now)
        if self.mail_store is not None:
            from bot.mail.store import expire_stored_mail

            expire_stored_mail(self.settings.mail_dir, now - self.settings.privacy.retention)
        return count

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
            self._schedule_reminders()
        except Exception:
            log.exception("scheduling reminders failed")
        for callback in self._kick_listeners:
            try:
                callback()
            except Exception:
                log.exception("kick listener failed")
        if self.worker is not None:
            self._wake.set()
        elif self.instance_holder is not None:
            # Another process (`clusterbot run`) delivers: tell it there is work.
            instance.notify(self.settings)

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
                f"{report.failed} refused permanently: see 'clusterbot deliveries list --status "
                "dead'"
            )
