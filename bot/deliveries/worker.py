"""The one delivery worker: claim due deliveries, send each through its transport, record
the outcome, and let the domain react (one hook). One backoff policy, one dead-letter path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.deliveries import store
from bot.deliveries.model import (
    Dead,
    Delivery,
    DeliveryReport,
    Outcome,
    OutcomeHook,
    Retry,
    Sent,
    Transport,
)
from bot.storage import from_iso, transaction, utc_now

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

# Rows claimed at once; the worker claims again while rows are due.
CLAIM_LIMIT = 50
# A claim lasts this long plus the transport's timeout per claimed row: long enough that a
# slow server never lets a second sender take a row still being sent, short enough that a
# crashed sender on another host does not block its rows for ever. (A crashed sender on
# this host is noticed at once: see is_dead_owner.)
LEASE_BASE = timedelta(minutes=2)
# One backoff policy for every transport: capped exponential with jitter in [0.5, 1]. The
# cap is short because the bot sends little: a recovered server is found quickly.
RETRY_BASE = timedelta(seconds=5)
RETRY_CAP = timedelta(minutes=5)
# Accepted deliveries are recorded in groups: at most this many, or this old, per commit.
FLUSH_ROWS = 100
FLUSH_SECONDS = 0.5
# A capped kind (see Worker caps) counts what was sent in this sliding window.
CAP_WINDOW = timedelta(hours=1)

_HOST = socket.gethostname()
# Workers alive in this process, by owner token: a claim by another token of this process
# (an earlier App, since closed) is as gone as a claim by a dead process.
_LIVE_OWNERS: set[str] = set()


def new_owner() -> str:
    """A claim owner: host, process id and a random token."""
    return f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def is_dead_owner(owner: str) -> bool:
    """True when the claim's sender is known to be gone (only knowable on this host)."""
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in _LIVE_OWNERS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def retry_delay(attempts: int, rng: random.Random | None = None) -> timedelta:
    """The backoff before the next try after the `attempts`-th failure (1-based)."""
    exponent = min(max(attempts - 1, 0), 20)
    delay = min(RETRY_BASE * (2**exponent), RETRY_CAP)
    # Jitter spreads retries so a recovering server is not hit by every row at once.
    factor: float = 0.5 + (rng or random).random() / 2
    return timedelta(seconds=delay.total_seconds() * factor)


@dataclass
class _Recorder:
    """Records accepted deliveries in group commits (one fsync per group, not per row).

    A crash before a group's commit means those deliveries go out again, with the same
    idempotency key (Message-ID): at-least-once holds, and it is rare.
    """

    worker: Worker
    pending: list[tuple[Delivery, Sent, datetime]] = field(default_factory=list)
    flushed_at: float = field(default_factory=time.monotonic)
    timer: asyncio.TimerHandle | asyncio.Handle | None = None

    def add(self, delivery: Delivery, outcome: Sent, at: datetime) -> None:
        self.pending.append((delivery, outcome, at))
        loop = asyncio.get_running_loop()
        if len(self.pending) >= FLUSH_ROWS:
            if self.timer is not None:
                self.timer.cancel()
            # Written as soon as the next send waits for its server.
            self.timer = loop.call_soon(self._on_timer)
        elif self.timer is None:
            # Should the next send stall, this mark is still written within FLUSH_SECONDS.
            self.timer = loop.call_later(FLUSH_SECONDS, self._on_timer)

    def flush_if_stale(self) -> None:
        if self.pending and time.monotonic() - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def _on_timer(self) -> None:
        self.timer = None
        if not self.pending:
            return
        if self.worker.db.conn.in_transaction:
            # Another task's transaction is open on this connection: do not write into it.
            self.timer = asyncio.get_running_loop().call_later(0.05, self._on_timer)
            return
        try:
            self.flush()
        except Exception:
            log.exception("deliveries: recording accepted deliveries failed, will retry")

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.flushed_at = time.monotonic()
        if not self.pending:
            return
        worker = self.worker
        with transaction(worker.db):
            for delivery, outcome, at in self.pending:
                worker._settle_sent(delivery, outcome, at)
        self.pending = []


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
        self.claim_limit = CLAIM_LIMIT
        self._lock = asyncio.Lock()
        self._again = False
        _LIVE_OWNERS.add(self.owner)

    def register(self, transport: Transport) -> None:
        """Add (or replace) the transport for its name: the registry is open."""
        self.transports[transport.name] = transport

    def close(self) -> None:
        """This worker stops: its claims may be taken over at once by the next one."""
        _LIVE_OWNERS.discard(self.owner)

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
        recorder = _Recorder(self)
        done = 0
        finished = False
        try:
            for index, delivery in enumerate(deliveries):
                done = index
                if self._withdraw(delivery, report):
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
                            self._settle_retry(transport, waiting, outcome, at)
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
                        self._settle_retry(transport, delivery, outcome, at)
                        report.retried += 1
                    else:
                        self._settle_dead(transport, delivery, outcome, at)
                        report.failed += 1
                report.errors.append(f"delivery {delivery.id}: {_error_of(outcome)}")
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
                defer(lambda: self._settle_sent(delivery, outcome, at))
            else:
                with transaction(self.db):
                    self._settle_sent(delivery, outcome, at)
            return outcome
        with transaction(self.db):
            if isinstance(outcome, Retry):
                self._settle_retry(transport, delivery, outcome, at)
                report.retried += 1
            else:
                self._settle_dead(transport, delivery, outcome, at)
        return outcome

    def settle_sent(self, delivery: Delivery, at: datetime) -> None:
        """A pull transport handed the delivery over (inside the caller's transaction)."""
        self._settle_sent(delivery, Sent(), at)

    # ------------------------------------------------------------ outcomes

    def _withdraw(self, delivery: Delivery, report: DeliveryReport) -> bool:
        if self.hook is None:
            return False
        with transaction(self.db):
            why = self.hook.withdrawn(self.db, delivery)
            if why is None:
                return False
            store.record_cancelled(self.db, delivery, self.owner, why=why)
        report.skipped += 1
        # Ids and kinds only: nothing personal in the log.
        log.info("delivery %d (%s): not sent, %s", delivery.id, delivery.kind, why)
        return True

    def _settle_sent(self, delivery: Delivery, outcome: Sent, at: datetime) -> None:
        if not store.record_sent(
            self.db, delivery, self.owner, at, ref=outcome.ref, note=outcome.refused
        ):
            log.info("delivery %d: accepted, but no longer ours to record", delivery.id)
            return
        if outcome.refused:
            log.warning(
                "delivery %d (%s): accepted for some recipients only", delivery.id, delivery.kind
            )
        if self.hook is not None:
            self.hook.settled(self.db, delivery, outcome, at)

    def _settle_retry(
        self, transport: Transport, delivery: Delivery, outcome: Retry, at: datetime
    ) -> None:
        after = outcome.after or retry_delay(delivery.attempts + 1, self.rng)
        if store.record_retry(
            self.db, delivery, self.owner, error=outcome.error, next_at=at + after
        ):
            if not outcome.unreachable:
                log.warning(
                    "delivery %d (%s %s): temporary failure (%s), will retry",
                    delivery.id,
                    delivery.transport,
                    delivery.kind,
                    _loggable(transport, outcome.error),
                )
            if self.hook is not None:
                self.hook.settled(self.db, delivery, outcome, at)

    def _settle_dead(
        self, transport: Transport, delivery: Delivery, outcome: Dead, at: datetime
    ) -> None:
        # The dead-letter path: kept in the table (listed by `clusterbot check` and
        # `deliveries list`), logged here, reported to the secretariat by the hook.
        if not store.record_dead(self.db, delivery, self.owner, error=outcome.reason):
            return
        log.error(
            "delivery %d (%s %s): refused permanently (%s); run 'clusterbot deliveries retry "
            "%d' once fixed",
            delivery.id,
            delivery.transport,
            delivery.kind,
            _loggable(transport, outcome.reason),
            delivery.id,
        )
        if self.hook is not None:
            self.hook.settled(self.db, delivery, outcome, at)


def _error_of(outcome: Outcome) -> str:
    if isinstance(outcome, Retry):
        return outcome.error
    if isinstance(outcome, Dead):
        return outcome.reason
    return outcome.refused or ""


def _loggable(transport: Any, error: str) -> str:
    # The transport knows what of its errors is safe for the log (no addresses).
    status = getattr(transport, "status", None)
    return str(status(error)) if status is not None else error.split(":")[0]
