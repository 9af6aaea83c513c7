"""The one delivery worker: claim due deliveries, send each through its transport, record
the outcome, and let the domain react (one hook). One backoff policy, one dead-letter path.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.deliveries import store
from bot.deliveries.backoff import RETRY_BASE, RETRY_CAP, retry_delay
from bot.deliveries.model import (
    Delivery,
    DeliveryReport,
    Outcome,
    OutcomeHook,
    Retry,
    Sent,
    Transport,
)
from bot.deliveries.outcomes import Outcomes, error_of
from bot.deliveries.owners import is_dead_owner, new_owner, owner_alive, owner_gone
from bot.deliveries.recorder import SentRecorder
from bot.storage import from_iso, transaction, utc_now

if TYPE_CHECKING:
    import sqlite_utils

__all__ = [
    "CLAIM_LIMIT",
    "LEASE_BASE",
    "RETRY_BASE",
    "RETRY_CAP",
    "Worker",
    "is_dead_owner",
    "new_owner",
    "retry_delay",
]

log = logging.getLogger(__name__)

# Rows claimed at once; the worker claims again while rows are due.
CLAIM_LIMIT = 50
# A claim lasts this long plus the transport's timeout per claimed row: long enough that a
# slow server never lets a second sender take a row still being sent, short enough that a
# crashed sender on another host does not block its rows for ever. (A crashed sender on
# this host is noticed at once: see is_dead_owner.)
LEASE_BASE = timedelta(minutes=2)
# A capped kind (see Worker caps) counts what was sent in this sliding window.
CAP_WINDOW = timedelta(hours=1)


class Worker:
    """Delivers the queue through registered transports; one per process (per App)."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        transports: Iterable[Transport] = (),
        *,
        hook: OutcomeHook | None = None,
        clock: Callable[[], datetime] = utc_now,
        owner: str | None = None,
        lease: timedelta = LEASE_BASE,
        caps: Mapping[tuple[str, str], int] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.transports: dict[str, Transport] = {}
        for transport in transports:
            self.register(transport)
        self.hook = hook
        self.clock = clock
        self.owner = owner or new_owner()
        self.lease = lease
        # (transport, kind) -> at most this many sent per CAP_WINDOW (0 or absent: no cap).
        self.caps = {key: value for key, value in (caps or {}).items() if value > 0}
        self.rng = rng
        self.outcomes = Outcomes(db, self.owner, hook, rng)
        self.claim_limit = CLAIM_LIMIT
        self._lock = asyncio.Lock()
        self._again = False
        owner_alive(self.owner)

    def register(self, transport: Transport) -> None:
        """Add (or replace) the transport for its name: the registry is open."""
        self.transports[transport.name] = transport

    def close(self) -> None:
        """This worker stops: its claims may be taken over at once by the next one."""
        owner_gone(self.owner)

    # ------------------------------------------------------------ one pass

    async def deliver_due(self, only: Iterable[str] | None = None) -> DeliveryReport:
        """Send everything due now (again if more became due meanwhile); the report."""
        names = [name for name in (only or self.transports) if name in self.transports]
        total = DeliveryReport()
        # A pass running already looks again before it ends; this one then waits for it
        # and finds what is left (usually nothing), so the caller returns after both.
        self._again = True
        async with self._lock:
            store.release_orphans(self.db, self.clock(), is_dead_owner)
            while True:
                self._again = False
                claimed = self._claim(names)
                if claimed:
                    report = await self._send_all(claimed)
                    total.add(report)
                if not claimed and not self._again:
                    break
        return total

    def _lease_for(self, transport: str, count: int) -> timedelta:
        per_row = float(getattr(self.transports[transport], "timeout", 30.0))
        return self.lease + timedelta(seconds=per_row * count)

    def _capped_allowance(self, now: datetime) -> dict[tuple[str, str], int]:
        allowance = {}
        for (transport, kind), cap in self.caps.items():
            sent, _ = store.count_sent_since(self.db, transport, kind, now - CAP_WINDOW)
            allowance[(transport, kind)] = max(cap - sent, 0)
        return allowance

    def _claim(self, names: Sequence[str]) -> list[Delivery]:
        now = self.clock()
        claimed: list[Delivery] = []
        allowance = self._capped_allowance(now)
        for name in names:
            capped = [kind for (transport, kind) in allowance if transport == name]
            claimed += store.claim(
                self.db,
                owner=self.owner,
                now=now,
                lease=self._lease_for(name, self.claim_limit),
                limit=self.claim_limit,
                transports=[name],
                exclude_kinds=capped,
            )
            for kind in capped:
                room = min(allowance[(name, kind)], self.claim_limit)
                if room:
                    claimed += store.claim(
                        self.db,
                        owner=self.owner,
                        now=now,
                        lease=self._lease_for(name, room),
                        limit=room,
                        transports=[name],
                        kinds=[kind],
                    )
        return claimed

    def next_wake(self) -> datetime | None:
        """When a delivery is next due for this worker (None: nothing waits)."""
        now = self.clock()
        allowance = self._capped_allowance(now)
        blocked = [key for key, room in allowance.items() if room == 0]
        candidates = []
        for name in self.transports:
            kinds = [kind for (transport, kind) in blocked if transport == name]
            due = store.next_due_at(self.db, [name], exclude_kinds=kinds)
            if due is not None:
                candidates.append(due)
            for kind in kinds:
                if store.count_waiting(self.db, name, kind):
                    _, oldest = store.count_sent_since(self.db, name, kind, now - CAP_WINDOW)
                    if oldest:
                        candidates.append(from_iso(oldest) + CAP_WINDOW)
        return min(candidates) if candidates else None

    async def _send_all(self, claimed: Sequence[Delivery]) -> DeliveryReport:
        report = DeliveryReport()
        by_transport: dict[str, list[Delivery]] = {}
        for delivery in claimed:
            by_transport.setdefault(delivery.transport, []).append(delivery)
        for name, deliveries in by_transport.items():
            transport = self.transports[name]
            if getattr(transport, "parallel", False):
                # One recipient's deliveries in order, different recipients at once: one
                # slow or rate-limited chat delays nobody else.
                per_recipient: dict[str, list[Delivery]] = {}
                for delivery in deliveries:
                    per_recipient.setdefault(delivery.recipient or "", []).append(delivery)
                parts = [DeliveryReport() for _ in per_recipient]
                await asyncio.gather(
                    *(
                        self._send_in_order(transport, rows, part)
                        for rows, part in zip(per_recipient.values(), parts, strict=True)
                    )
                )
                for part in parts:
                    report.add(part)
            else:
                await self._send_in_order(transport, deliveries, report)
        return report

    async def _send_in_order(
        self, transport: Transport, deliveries: Sequence[Delivery], report: DeliveryReport
    ) -> None:
        recorder = SentRecorder(self.db, self.outcomes.sent)
        done = 0
        finished = False
        try:
            for index, delivery in enumerate(deliveries):
                done = index
                if self.outcomes.withdraw(delivery, report):
                    continue
                if not getattr(transport, "connected", True):
                    # Connecting may take up to the transport's timeout: record first.
                    recorder.flush()
                recorder.flush_if_stale()
                try:
                    outcome = await transport.send(delivery)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # A bug in a transport must not become a retry every few seconds.
                    log.exception("delivery %d: transport %s failed", delivery.id, transport.name)
                    outcome = Retry(f"{type(exc).__name__}: {exc}")
                at = self.clock()
                if isinstance(outcome, Sent):
                    recorder.add(delivery, outcome, at)
                    report.sent += 1
                    report.sent_ids.append(delivery.id)
                    if outcome.refused:
                        report.partial += 1
                        report.errors.append(f"delivery {delivery.id}: {outcome.refused}")
                    continue
                if isinstance(outcome, Retry) and outcome.unreachable:
                    # The server cannot be reached: the rest of this run waits as well,
                    # instead of each paying the connect timeout.
                    rest = deliveries[index:]
                    recorder.flush()
                    with transaction(self.db):
                        for waiting in rest:
                            self.outcomes.retry(transport, waiting, outcome, at)
                    report.retried += len(rest)
                    report.errors.append(outcome.error)
                    log.warning(
                        "deliveries: %s; %d %s wait for a retry",
                        outcome.error,
                        len(rest),
                        "delivery" if len(rest) == 1 else "deliveries",
                    )
                    done = len(deliveries)
                    break
                recorder.flush()
                with transaction(self.db):
                    if isinstance(outcome, Retry):
                        self.outcomes.retry(transport, delivery, outcome, at)
                        report.retried += 1
                    else:
                        self.outcomes.dead(transport, delivery, outcome, at)
                        report.failed += 1
                report.errors.append(f"delivery {delivery.id}: {error_of(outcome)}")
            else:
                done = len(deliveries)
            finished = True
        finally:
            recorder.flush()
            if not finished:
                # Cancelled (shutdown) or failing: give back what was not tried.
                store.release_claims(self.db, self.owner, [d.id for d in deliveries[done + 1 :]])
                abort = getattr(transport, "abort", None)
                if abort is not None:
                    abort()
        if report.sent:
            report.released += store.release_unreachable(self.db, transport.name, self.clock())
        if finished:
            await transport.idle()

    async def send_claimed(
        self,
        delivery: Delivery,
        *,
        defer: Callable[[Callable[[], None]], None] | None = None,
        attempt: Callable[[], Awaitable[Outcome]] | None = None,
    ) -> Outcome:
        """Send one delivery this worker already holds (queued claimed by its handler).

        With `defer`, a Sent outcome is recorded by `defer(work)` inside the caller's next
        (group) commit instead of a commit of its own. `attempt` sends it in place of
        `transport.send(delivery)` (the caller holds it rendered already).
        """
        transport = self.transports[delivery.transport]
        report = DeliveryReport()
        try:
            outcome = await (attempt() if attempt is not None else transport.send(delivery))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("delivery %d: transport %s failed", delivery.id, transport.name)
            outcome = Retry(f"{type(exc).__name__}: {exc}")
        at = self.clock()
        if isinstance(outcome, Sent):
            if defer is not None:
                defer(lambda: self.outcomes.sent(delivery, outcome, at))
            else:
                with transaction(self.db):
                    self.outcomes.sent(delivery, outcome, at)
            return outcome
        with transaction(self.db):
            if isinstance(outcome, Retry):
                self.outcomes.retry(transport, delivery, outcome, at)
                report.retried += 1
            else:
                self.outcomes.dead(transport, delivery, outcome, at)
        return outcome

    def settle_sent(self, delivery: Delivery, at: datetime) -> None:
        """A pull transport handed the delivery over (inside the caller's transaction)."""
        self.outcomes.sent(delivery, Sent(), at)
