"""What the queue holds and what a transport answers: typed records, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import sqlite_utils

# Statuses of a delivery (see bot.storage.DELIVERY_STATUSES): waiting to go out, claimed by
# a sender, accepted, waiting for a retry, refused for good, or withdrawn before sending.
QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
RETRYING = "failed-temporary"
DEAD = "dead"
CANCELLED = "cancelled"


@dataclass(frozen=True)
class NewDelivery:
    """A message to queue: which transport carries it, to whom, and its stable key."""

    transport: str
    kind: str
    recipient: str
    payload: bytes | str
    idempotency_key: str
    enquiry_id: int | None = None
    sender: str | None = None
    # Not before this instant (None: at once).
    not_before: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    """One queued message as stored."""

    id: int
    transport: str
    kind: str
    enquiry_id: int | None
    sender: str | None
    recipient: str | None
    payload: bytes | str | None
    idempotency_key: str
    status: str
    attempts: int
    next_attempt_at: str
    lease_owner: str | None
    lease_until: str | None
    last_error: str | None
    created_at: str
    sent_at: str | None
    sent_ref: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Delivery:
        """From a `deliveries` row (a dict of its columns)."""
        return cls(
            id=int(row["id"]),
            transport=str(row["transport"]),
            kind=str(row["kind"]),
            enquiry_id=None if row["enquiry_id"] is None else int(row["enquiry_id"]),
            sender=row["sender"],
            recipient=row["recipient"],
            payload=row["payload"],
            idempotency_key=str(row["idempotency_key"]),
            status=str(row["status"]),
            attempts=int(row["attempts"]),
            next_attempt_at=str(row["next_attempt_at"]),
            lease_owner=row["lease_owner"],
            lease_until=row["lease_until"],
            last_error=row["last_error"],
            created_at=str(row["created_at"]),
            sent_at=row["sent_at"],
            sent_ref=row["sent_ref"],
        )


# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Sent:
    """The transport's peer accepted the message. `ref` is its id there (a Telegram
    message id); `refused` notes recipients refused while others accepted."""

    ref: str | None = None
    refused: str | None = None


@dataclass(frozen=True)
class Retry:
    """A temporary failure: try again after `after` (None: the backoff policy decides).

    `unreachable`: the transport could not reach its server at all; the other messages it
    holds in this run wait too, and all become due at once when it is reachable again.
    """

    error: str
    after: timedelta | None = None
    unreachable: bool = False


@dataclass(frozen=True)
class Dead:
    """Refused for good: the dead-letter path reports it. `recipient_refused`: the address
    itself was refused (a notice to the same address would be refused too)."""

    reason: str
    recipient_refused: bool = False


Outcome = Sent | Retry | Dead


class Transport(Protocol):
    """Carries deliveries of one `name` (the `transport` column)."""

    name: str

    async def send(self, delivery: Delivery) -> Outcome:
        """Try to send one delivery; never raises for a delivery problem."""
        ...

    async def idle(self) -> None:
        """The worker has nothing more for now: release connections."""
        ...


class OutcomeHook(Protocol):
    """Domain rules reacting to deliveries (bot.enquiries): transports know nothing of them.

    Both run inside the transaction recording the delivery's state.
    """

    def withdrawn(self, db: sqlite_utils.Database, delivery: Delivery) -> str | None:
        """Just before sending: why this delivery must not go out any more, or None."""
        ...

    def settled(
        self, db: sqlite_utils.Database, delivery: Delivery, outcome: Outcome, at: datetime
    ) -> None:
        """After the outcome of one attempt was recorded."""
        ...


@dataclass
class DeliveryReport:
    """What one delivery run did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    partial: int = 0
    released: int = 0
    # Claimed but not sent: withdrawn meanwhile (erased with their enquiry, a reminder for
    # an enquiry answered since).
    skipped: int = 0
    sent_ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        """Deliveries this run tried to send."""
        return self.sent + self.retried + self.failed

    def add(self, other: DeliveryReport) -> None:
        """Fold another run's counts into this one."""
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.partial += other.partial
        self.released += other.released
        self.skipped += other.skipped
        self.sent_ids.extend(other.sent_ids)
        self.errors.extend(other.errors)
