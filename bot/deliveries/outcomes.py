"""What the worker records of each attempt: the row's new state, the log line, and the
domain's reaction (the OutcomeHook) in the same transaction. The dead-letter path is here."""

from __future__ import annotations

import logging
import random
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.deliveries import store
from bot.deliveries.backoff import retry_delay
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
from bot.storage import transaction

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)


class Outcomes:
    """Records outcomes for one claim owner (inside the caller's transaction, except
    withdraw, which opens its own)."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        owner: str,
        hook: OutcomeHook | None,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.owner = owner
        self.hook = hook
        self.rng = rng

    def withdraw(self, delivery: Delivery, report: DeliveryReport) -> bool:
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

    def sent(self, delivery: Delivery, outcome: Sent, at: datetime) -> None:
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

    def retry(self, transport: Transport, delivery: Delivery, outcome: Retry, at: datetime) -> None:
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
                    loggable(transport, outcome.error),
                )
            if self.hook is not None:
                self.hook.settled(self.db, delivery, outcome, at)

    def dead(self, transport: Transport, delivery: Delivery, outcome: Dead, at: datetime) -> None:
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
            loggable(transport, outcome.reason),
            delivery.id,
        )
        if self.hook is not None:
            self.hook.settled(self.db, delivery, outcome, at)


def error_of(outcome: Outcome) -> str:
    if isinstance(outcome, Retry):
        return outcome.error
    if isinstance(outcome, Dead):
        return outcome.reason
    return outcome.refused or ""


def loggable(transport: Any, error: str) -> str:
    # The transport knows what of its errors is safe for the log (no addresses).
    status = getattr(transport, "status", None)
    return str(status(error)) if status is not None else error.split(":")[0]
