"""The jobs on the app's one scheduler, each derived from rows: the digest (cron),
retention (hourly), the inbox reader, and one date job at the instant the next reminder
is due and one at the next due delivery. Nothing polls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.jobs.digest import DIGEST_CATCH_UP, DigestResult, digest_trigger, run_scheduled_digest
from bot.jobs.reminders import next_reminder_at, send_reminders
from bot.jobs.retention import RETENTION_EVERY, apply_retention
from bot.storage import DatabaseFileLost

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

DELIVERIES_JOB = "deliveries"
REMINDERS_JOB = "reminders"
DIGEST_JOB = "digest"
RETENTION_JOB = "retention"
INBOX_JOB = "inbox"


class ScheduledJobs:
    """Adds the app's jobs to its scheduler, re-derives the date jobs, runs each job."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._tasks: set[asyncio.Task[Any]] = set()

    def add(self) -> None:
        """Add every job (at start); the date jobs follow the rows from then on."""
        # Every job derives what is due from the database. The periodic ones fold missed
        # runs into one (coalesce), run however late (misfire_grace_time=None; 3.x would
        # drop a job 1 s late after a stall) and never overlap (max_instances=1).
        scheduler = self.app.scheduler
        now = datetime.now(UTC)
        scheduler.add_job(
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
        scheduler.add_job(
            self._tracked(self.run_digest),
            digest_trigger(self.app.settings),
            id=DIGEST_JOB,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=int(DIGEST_CATCH_UP.total_seconds()),
            max_instances=1,
        )
        if self.app.settings.inbox.configured:
            # One long-lived job: IDLE (or polling) with its own reconnects and backoff.
            scheduler.add_job(
                self._tracked(self.watch_inbox),
                "date",
                run_date=now,
                id=INBOX_JOB,
                replace_existing=True,
                misfire_grace_time=None,
            )
        # At start, catch up a digest slot missed while the bot was down.
        scheduler.add_job(
            self._tracked(self.catch_up_digest),
            "date",
            run_date=now,
            id=f"{DIGEST_JOB}-catch-up",
            replace_existing=True,
            misfire_grace_time=None,
        )
        self.schedule_reminders()

    def _at(self, moment: datetime) -> datetime:
        # The app's clock may be a test's: a job due `moment` (app time) runs after the
        # same delay of real time.
        delay = max((moment - self.app.clock()).total_seconds(), 0.0)
        return datetime.now(UTC) + timedelta(seconds=delay)

    def schedule_reminders(self) -> None:
        """One date job at the instant the next reminder is due, derived from the rows.

        Re-derived at start, after every change (kick) and after each run: a restart
        neither loses nor repeats a reminder, because the reminder and its counter are
        written in one transaction.
        """
        app = self.app
        if app.db is None:
            return
        due = next_reminder_at(app.db, app.settings)
        if due is None:
            if app.scheduler.get_job(REMINDERS_JOB) is not None:
                app.scheduler.remove_job(REMINDERS_JOB)
            return
        app.scheduler.add_job(
            self._tracked(self.run_reminders),
            "date",
            run_date=self._at(due),
            id=REMINDERS_JOB,
            replace_existing=True,
            misfire_grace_time=None,
        )

    def schedule_deliveries(self) -> None:
        """Wake the worker when the next delivery is due (a retry, a capped mail)."""
        app = self.app
        delivery = app.delivery
        if app.db is None or delivery is None:
            return
        due = delivery.worker.next_wake()
        if due is None:
            if app.scheduler.get_job(DELIVERIES_JOB) is not None:
                app.scheduler.remove_job(DELIVERIES_JOB)
            return
        app.scheduler.add_job(
            self.wake_deliveries,
            "date",
            run_date=self._at(due),
            id=DELIVERIES_JOB,
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def wake_deliveries(self) -> None:
        """The deliveries date job: wake the worker for its next due attempt."""
        # A coroutine, so the scheduler runs it on the event loop: a plain function would
        # run in its thread pool, and an asyncio.Event set from another thread never wakes
        # an idle loop.
        if self.app.delivery is not None:
            self.app.delivery.wake()

    def after_delivery(self) -> None:
        """After a delivery pass: sent enquiry mails start their reminder clocks; retries
        set the next wake."""
        self.schedule_reminders()
        self.schedule_deliveries()

    def running(self) -> list[asyncio.Task[Any]]:
        """The jobs running now, for close() to cancel."""
        return [task for task in self._tasks if not task.done()]

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
                # Said once by the app's _database_lost; the app is stopping.
                return
            except Exception:
                log.exception("job %s failed", getattr(func, "__name__", "?"))
            finally:
                if task is not None:
                    self._tasks.discard(task)

        job.__name__ = getattr(func, "__name__", "job")
        return job

    # ------------------------------------------------------------ the jobs

    async def watch_inbox(self) -> None:
        """Read the secretariat's e-mail replies from the bot's mailbox until stopped."""
        from bot.mail.inbound.watcher import InboxWatcher

        app = self.app
        watcher = InboxWatcher(
            app.require_db(),
            app.settings,
            clock=app.clock,
            on_result=self._inbound_processed,
            tls_context=app.imap_tls_context,
        )
        await watcher.run()

    def _inbound_processed(self, result: Any) -> None:
        if result.duplicate:
            return
        if result.relayed:
            self.app.say(f"e-mail answer to {result.ref} received; relaying it")
        if result.status in ("answer", "follow_up", "bounce"):
            # It queued mail (or failed one) and changed when reminders are due.
            self.app.kick()

    async def run_reminders(self) -> list[str]:
        """Queue due reminders; deliver them at once; schedule the next one."""
        app = self.app
        refs = send_reminders(app.require_db(), app.settings, app.clock())
        app.kick()
        return refs

    async def run_digest(self, catch_up: bool = False) -> DigestResult | None:
        """Serve the current digest slot if it was not served yet."""
        app = self.app
        result = run_scheduled_digest(
            app.require_db(), app.settings, app.clock(), catch_up=catch_up
        )
        if result is not None and result.delivery_id is not None:
            app.kick()
        return result

    async def catch_up_digest(self) -> DigestResult | None:
        """At start: serve a digest slot missed while the bot was down."""
        return await self.run_digest(catch_up=True)

    async def run_retention(self) -> int:
        """Erase personal data whose retention expired (stored mail files included)."""
        app = self.app
        now = app.clock()
        count = apply_retention(app.require_db(), app.settings, now)
        if app.mail_store is not None:
            from bot.mail.store import expire_stored_mail

            expire_stored_mail(app.settings.mail_dir, now - app.settings.privacy.retention)
        return count
