"""The queue's life cycle in SQL: enqueue (the only insert into `deliveries`), claim,
record outcomes. Claims are atomic: one UPDATE ... RETURNING inside BEGIN IMMEDIATE, so of
two senders on one database exactly one gets each row; outcomes are recorded only by the
sender that holds the lease. The other statements on the table (claims.py, lookups.py for
the domain, operator_tools.py for operators) are re-exported here: callers use
`store.<name>` (each module's __all__).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.deliveries.claims import *  # noqa: F403
from bot.deliveries.lookups import *  # noqa: F403
from bot.deliveries.model import (
    CANCELLED,
    DEAD,
    QUEUED,
    RETRYING,
    SENDING,
    SENT,
    Delivery,
    NewDelivery,
)
from bot.deliveries.operator_tools import *  # noqa: F403
from bot.deliveries.sql import UNREACHABLE, rows, short
from bot.storage import to_iso, transaction

if TYPE_CHECKING:
    import sqlite_utils


# Called with the transport's name whenever a delivery is queued for any sender (not one
# queued already claimed): the app's worker wakes on it, in this process. Other processes
# learn of it through the run lock's holder being signalled (bot.instance.notify).
_enqueue_listeners: list[Callable[[str], None]] = []


def add_enqueue_listener(callback: Callable[[str], None]) -> None:
    """Call `callback(transport)` after each enqueue of an unclaimed delivery."""
    _enqueue_listeners.append(callback)


def remove_enqueue_listener(callback: Callable[[str], None]) -> None:
    """Stop calling `callback`."""
    if callback in _enqueue_listeners:
        _enqueue_listeners.remove(callback)


# ---------------------------------------------------------------- queueing


def enqueue(
    db: sqlite_utils.Database,
    new: NewDelivery,
    now: datetime,
    *,
    claimed_by: str | None = None,
    lease: timedelta | None = None,
) -> int:
    """Queue a delivery (inside the caller's transaction); returns its id.

    The idempotency key is unique: queueing the same key again returns the existing row.
    `claimed_by` queues it already claimed by that sender until now + lease (a reply its
    handler sends at once; should the handler die, the lease runs out and any sender
    takes it over).
    """
    due = to_iso(new.not_before or now)
    owner, until = None, None
    if claimed_by is not None:
        owner, until = claimed_by, to_iso(now + (lease or timedelta(minutes=2)))
    cursor = db.conn.execute(
        "INSERT INTO deliveries (transport, kind, enquiry_id, sender, recipient, payload, "
        "idempotency_key, status, attempts, next_attempt_at, created_at, lease_owner, "
        "lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?) "
        "ON CONFLICT (idempotency_key) DO NOTHING",
        (
            new.transport,
            new.kind,
            new.enquiry_id,
            new.sender,
            new.recipient,
            new.payload,
            new.idempotency_key,
            QUEUED if owner is None else SENDING,
            due,
            to_iso(now),
            owner,
            until,
        ),
    )
    if cursor.rowcount:
        if owner is None:
            for listener in list(_enqueue_listeners):
                listener(new.transport)
        return int(cursor.lastrowid or 0)
    found = db.conn.execute(
        "SELECT id FROM deliveries WHERE idempotency_key = ?", (new.idempotency_key,)
    ).fetchone()
    return int(found[0])


def enqueue_claimed(
    db: sqlite_utils.Database, new: NewDelivery, now: datetime, *, owner: str, lease: timedelta
) -> Delivery:
    """Queue a delivery already claimed by `owner` (inside the caller's transaction); the
    row as stored, so its sender needs no read back. Its key must be new."""
    delivery_id = enqueue(db, new, now, claimed_by=owner, lease=lease)
    stamp = to_iso(now)
    return Delivery(
        id=delivery_id,
        transport=new.transport,
        kind=new.kind,
        enquiry_id=new.enquiry_id,
        sender=new.sender,
        recipient=new.recipient,
        payload=new.payload,
        idempotency_key=new.idempotency_key,
        status=SENDING,
        attempts=0,
        next_attempt_at=to_iso(new.not_before or now),
        lease_owner=owner,
        lease_until=to_iso(now + lease),
        last_error=None,
        created_at=stamp,
        sent_at=None,
        sent_ref=None,
    )


# ---------------------------------------------------------------- outcomes
# Each runs inside the caller's transaction and returns False when the row is no longer
# this owner's claim (its lease ran out and another sender took it, or it was erased).


def record_sent(
    db: sqlite_utils.Database,
    delivery: Delivery,
    owner: str,
    at: datetime,
    *,
    ref: str | None = None,
    note: str | None = None,
) -> bool:
    """The peer accepted it."""
    cursor = db.conn.execute(
        "UPDATE deliveries SET status = ?, sent_at = ?, sent_ref = ?, attempts = attempts + 1, "
        "last_error = ?, lease_owner = NULL, lease_until = NULL "
        "WHERE id = ? AND status = ? AND lease_owner = ?",
        (SENT, to_iso(at), ref, note, delivery.id, SENDING, owner),
    )
    return bool(cursor.rowcount)


def record_retry(
    db: sqlite_utils.Database,
    delivery: Delivery,
    owner: str,
    *,
    error: str,
    next_at: datetime,
) -> bool:
    """A temporary failure: due again at `next_at`."""
    cursor = db.conn.execute(
        "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?, "
        "next_attempt_at = ?, lease_owner = NULL, lease_until = NULL "
        "WHERE id = ? AND status = ? AND lease_owner = ?",
        (RETRYING, short(error), to_iso(next_at), delivery.id, SENDING, owner),
    )
    return bool(cursor.rowcount)


def record_dead(db: sqlite_utils.Database, delivery: Delivery, owner: str, *, error: str) -> bool:
    """Refused for good: kept (payload included) until an operator re-queues it."""
    cursor = db.conn.execute(
        "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?, "
        "lease_owner = NULL, lease_until = NULL WHERE id = ? AND status = ? AND lease_owner = ?",
        (DEAD, short(error), delivery.id, SENDING, owner),
    )
    return bool(cursor.rowcount)


def record_cancelled(
    db: sqlite_utils.Database, delivery: Delivery, owner: str, *, why: str
) -> bool:
    """Withdrawn before sending: never sent, its payload dropped."""
    cursor = db.conn.execute(
        "UPDATE deliveries SET status = ?, payload = NULL, last_error = ?, lease_owner = NULL, "
        "lease_until = NULL WHERE id = ? AND status = ? AND lease_owner = ?",
        (CANCELLED, short(why), delivery.id, SENDING, owner),
    )
    return bool(cursor.rowcount)


def record_progress(db: sqlite_utils.Database, delivery_id: int, owner: str, pieces: int) -> bool:
    """How many of a multi-part delivery's pieces were accepted (a restart sends the rest)."""
    cursor = db.conn.execute(
        "UPDATE deliveries SET sent_ref = ? WHERE id = ? AND status = ? AND lease_owner = ?",
        (str(pieces), delivery_id, SENDING, owner),
    )
    return bool(cursor.rowcount)


def release_unreachable(db: sqlite_utils.Database, transport: str, at: datetime) -> int:
    """The transport reached its server again: deliveries waiting only for that are due."""
    with transaction(db):
        cursor = db.conn.execute(
            "UPDATE deliveries SET next_attempt_at = ? WHERE transport = ? AND status = ? "
            "AND next_attempt_at > ? AND last_error LIKE ?",
            (to_iso(at), transport, RETRYING, to_iso(at), UNREACHABLE + "%"),
        )
    return int(cursor.rowcount or 0)


def get(db: sqlite_utils.Database, delivery_id: int) -> Delivery | None:
    """One delivery by id."""
    found = rows(db, "SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
    return found[0] if found else None
