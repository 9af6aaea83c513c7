"""The app's one delivery worker on its event loop: woken when a delivery is queued (here,
or by a command's signal) and at the next due attempt, never on a fixed poll."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.deliveries import store
from bot.deliveries.model import DeliveryReport
from bot.deliveries.smtp import SmtpTarget, SmtpTransport, count_mails
from bot.deliveries.worker import Worker
from bot.storage import transaction

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings import Settings

log = logging.getLogger(__name__)


class DeliveryLoop:
    """Runs the deliveries worker whenever woken; says what each pass handed over."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        settings: Settings,
        smtp_target: SmtpTarget,
        *,
        clock: Callable[[], datetime],
        embedded: bool,
        say: Callable[[str], None],
        after_pass: Callable[[], None],
        after_failure: Callable[[], None],
    ) -> None:
        from bot.enquiries import DeliveryRules

        self.db = db
        self.settings = settings
        self.smtp_target = smtp_target
        # With the embedded store each saved mail is reported by the store itself.
        self.embedded = embedded
        self._say = say
        self._after_pass = after_pass
        self._after_failure = after_failure
        self.worker = Worker(
            db,
            [SmtpTransport(smtp_target, on_connect=self._record_smtputf8)],
            hook=DeliveryRules(settings),
            clock=clock,
            caps={("smtp", "enquiry"): settings.enquiries.max_mails_per_hour},
        )
        self._wake = asyncio.Event()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._closed = False

    def start(self) -> None:
        """Listen for queued deliveries and run the loop (on the running event loop)."""
        self._loop = asyncio.get_running_loop()
        store.add_enqueue_listener(self._enqueued)
        self._task = self._loop.create_task(self._run())
        # Whatever is due already (queued while the bot was down) goes out now.
        self._wake.set()

    def wake(self) -> None:
        """Run a pass on the loop's next turn."""
        self._wake.set()

    def stop_waking(self) -> None:
        """No pass starts after this one (the app is closing)."""
        self._closing = True
        self._wake.set()

    @property
    def task(self) -> asyncio.Task[Any] | None:
        """The loop's task, for close() to cancel with the app's other tasks."""
        return self._task

    def close(self) -> None:
        """Stop listening for queued deliveries and close the worker (after the task ended)."""
        self._closed = True
        store.remove_enqueue_listener(self._enqueued)
        self.worker.close()

    async def deliver(self) -> DeliveryReport:
        """Deliver every due delivery now (the worker's pass); the report."""
        report = await self.worker.deliver_due()
        self._report(report)
        # Sent enquiry mails start their reminder clocks; retries set the next wake.
        self._after_pass()
        return report

    async def _run(self) -> None:
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
                self._after_failure()
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

    def _record_smtputf8(self, offered: bool) -> None:
        """What the mail server's EHLO said about SMTPUTF8, for the form (bot.mail.smtputf8)."""
        from bot.mail.smtputf8 import record_smtputf8

        if not self._closed and self.settings.smtp.host:
            with transaction(self.db):
                record_smtputf8(self.db, self.settings, offered)

    def _report(self, report: DeliveryReport) -> None:
        if not self.embedded and report.sent:
            target = self.smtp_target
            self._say(f"{count_mails(report.sent)} handed to {target.hostname}:{target.port}")
        if report.retried:
            self._say(f"{count_mails(report.retried)} not delivered yet, will retry")
        if report.failed:
            self._say(
                f"{report.failed} refused permanently: see 'clusterbot deliveries list --status "
                "dead'"
            )
