"""Accepted deliveries recorded in groups: one commit (one fsync) per group, not per row."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.deliveries.model import Delivery, Sent
from bot.storage import transaction

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

# Accepted deliveries are recorded in groups: at most this many, or this old, per commit.
FLUSH_ROWS = 100
FLUSH_SECONDS = 0.5


@dataclass
class SentRecorder:
    """Records accepted deliveries in group commits (one fsync per group, not per row).

    A crash before a group's commit means those deliveries go out again, with the same
    idempotency key (Message-ID): at-least-once holds, and it is rare.
    """

    db: sqlite_utils.Database
    # Records one accepted delivery (inside the transaction this opens).
    settle: Callable[[Delivery, Sent, datetime], None]
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
        if self.db.conn.in_transaction:
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
        with transaction(self.db):
            for delivery, outcome, at in self.pending:
                self.settle(delivery, outcome, at)
        self.pending = []
