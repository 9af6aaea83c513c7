"""SQL the domain, the channels and retention use on `deliveries`: by enquiry, recipient,
key or kind (look-ups, withdrawals, counts). Inserting and claiming live in store.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.deliveries.model import CANCELLED, DEAD, QUEUED, RETRYING, SENDING, SENT, Delivery
from bot.deliveries.sql import UNSENT, marks, rows, short
from bot.storage import to_iso, transaction

if TYPE_CHECKING:
    import sqlite_utils

__all__ = [
    "alive_of_kind",
    "cancel",
    "cancel_for_enquiry",
    "cancel_for_recipient",
    "claim_for_recipient",
    "count_sent_since",
    "count_waiting",
    "drop_old_payloads",
    "enquiries_of_keys",
    "first_key",
    "for_enquiry",
    "mark_bounced",
    "recipients",
    "retarget",
    "unsent_of_kind",
]


def retarget(db: sqlite_utils.Database, transport: str, old: str, new: str) -> int:
    """Unsent deliveries to recipient `old` go to `new` (a chat that changed its id)."""
    cursor = db.conn.execute(
        f"UPDATE deliveries SET recipient = ? WHERE transport = ? AND recipient = ? "
        f"AND status IN ({marks(UNSENT)})",
        (new, transport, old, *UNSENT),
    )
    return int(cursor.rowcount or 0)


def claim_for_recipient(
    db: sqlite_utils.Database,
    *,
    owner: str,
    now: datetime,
    transport: str,
    recipient: str,
    lease: timedelta,
) -> list[Delivery]:
    """A pull transport (the console) takes what waits for one recipient, oldest first."""
    stamp = to_iso(now)
    with transaction(db):
        claimed = rows(
            db,
            "UPDATE deliveries SET status = ?, lease_owner = ?, lease_until = ? WHERE id IN ("
            "SELECT id FROM deliveries WHERE transport = ? AND recipient = ? AND ("
            "(status IN (?, ?) AND next_attempt_at <= ?) OR (status = ? AND lease_until <= ?))"
            ") RETURNING *",
            (
                SENDING,
                owner,
                to_iso(now + lease),
                transport,
                recipient,
                QUEUED,
                RETRYING,
                stamp,
                SENDING,
                stamp,
            ),
        )
    return sorted(claimed, key=lambda d: d.id)


def cancel_for_recipient(
    db: sqlite_utils.Database, transport: str, recipient: str, why: str
) -> int:
    """/forget: withdraw what still waits for this chat and drop every payload sent to it
    (inside the caller's transaction)."""
    cursor = db.conn.execute(
        f"UPDATE deliveries SET status = ?, last_error = ?, lease_owner = NULL, "
        f"lease_until = NULL WHERE transport = ? AND recipient = ? "
        f"AND status IN ({marks(UNSENT)})",
        (CANCELLED, why, transport, recipient, *UNSENT),
    )
    db.conn.execute(
        "UPDATE deliveries SET payload = NULL WHERE transport = ? AND recipient = ?",
        (transport, recipient),
    )
    return int(cursor.rowcount or 0)


def first_key(db: sqlite_utils.Database, enquiry_id: int, kind: str) -> str | None:
    """The idempotency key (Message-ID) of an enquiry's first delivery of this kind."""
    found = db.conn.execute(
        "SELECT idempotency_key FROM deliveries WHERE enquiry_id = ? AND kind = ? "
        "ORDER BY id LIMIT 1",
        (enquiry_id, kind),
    ).fetchone()
    return str(found[0]) if found else None


def enquiries_of_keys(
    db: sqlite_utils.Database, keys: Sequence[str], kinds: Sequence[str]
) -> list[int]:
    """The distinct enquiries whose deliveries of these kinds carry one of these keys."""
    if not keys or not kinds:
        return []
    found = db.conn.execute(
        f"SELECT DISTINCT enquiry_id FROM deliveries WHERE idempotency_key IN ({marks(keys)}) "
        f"AND kind IN ({marks(kinds)}) AND enquiry_id IS NOT NULL ORDER BY enquiry_id",
        (*keys, *kinds),
    ).fetchall()
    return [int(row[0]) for row in found]


def mark_bounced(db: sqlite_utils.Database, keys: Sequence[str], error: str) -> list[Delivery]:
    """Sent deliveries a bounce reports on become dead (inside the caller's transaction);
    the ones changed."""
    changed: list[Delivery] = []
    for key in dict.fromkeys(keys):
        changed += rows(
            db,
            "UPDATE deliveries SET status = ?, last_error = ? WHERE idempotency_key = ? "
            "AND status = ? RETURNING *",
            (DEAD, short(error), key, SENT),
        )
    return changed


def alive_of_kind(db: sqlite_utils.Database, enquiry_id: int, kind: str, *, besides: int) -> int:
    """How many other deliveries of this kind for the enquiry are sent or still to send."""
    found = db.conn.execute(
        f"SELECT count(*) FROM deliveries WHERE enquiry_id = ? AND kind = ? AND id != ? "
        f"AND status IN ({marks((SENT, *UNSENT))})",
        (enquiry_id, kind, besides, SENT, *UNSENT),
    ).fetchone()
    return int(found[0])


def for_enquiry(db: sqlite_utils.Database, enquiry_id: int) -> list[Delivery]:
    """An enquiry's deliveries, oldest first."""
    return rows(db, "SELECT * FROM deliveries WHERE enquiry_id = ? ORDER BY id", (enquiry_id,))


def cancel_for_enquiry(db: sqlite_utils.Database, enquiry_id: int, why: str) -> int:
    """Erasure: withdraw the enquiry's unsent deliveries and drop every payload (inside the
    caller's transaction; a sender holding one finds its claim gone). Returns how many
    were withdrawn."""
    cursor = db.conn.execute(
        f"UPDATE deliveries SET status = ?, last_error = ?, lease_owner = NULL, "
        f"lease_until = NULL WHERE enquiry_id = ? AND status IN ({marks(UNSENT)})",
        (CANCELLED, why, enquiry_id, *UNSENT),
    )
    db.conn.execute(
        "UPDATE deliveries SET payload = NULL, recipient = NULL, sender = NULL "
        "WHERE enquiry_id = ?",
        (enquiry_id,),
    )
    return int(cursor.rowcount or 0)


def unsent_of_kind(db: sqlite_utils.Database, kind: str) -> list[Delivery]:
    """Deliveries of one kind not sent yet (queued, being sent, or waiting for a retry)."""
    return rows(
        db,
        f"SELECT * FROM deliveries WHERE kind = ? AND status IN ({marks(UNSENT)}) ORDER BY id",
        (kind, *UNSENT),
    )


def cancel(db: sqlite_utils.Database, delivery_id: int, why: str) -> bool:
    """Withdraw one unsent delivery and drop its payload (inside the caller's transaction)."""
    cursor = db.conn.execute(
        f"UPDATE deliveries SET status = ?, last_error = ?, lease_owner = NULL, "
        f"lease_until = NULL, payload = NULL WHERE id = ? AND status IN ({marks(UNSENT)})",
        (CANCELLED, why, delivery_id, *UNSENT),
    )
    return bool(cursor.rowcount)


def drop_old_payloads(db: sqlite_utils.Database, before: datetime) -> int:
    """Retention: finished deliveries without an enquiry (digests, notices) older than
    `before` lose their payload (inside the caller's transaction)."""
    cursor = db.conn.execute(
        f"UPDATE deliveries SET payload = NULL WHERE enquiry_id IS NULL "
        f"AND status NOT IN ({marks(UNSENT)}) AND payload IS NOT NULL AND created_at < ?",
        (*UNSENT, to_iso(before)),
    )
    return int(cursor.rowcount or 0)


def count_sent_since(
    db: sqlite_utils.Database, transport: str, kind: str, since: datetime
) -> tuple[int, str | None]:
    """How many deliveries of this kind were sent since `since`, and the oldest such time."""
    found = db.conn.execute(
        "SELECT count(*), min(sent_at) FROM deliveries WHERE transport = ? AND kind = ? "
        "AND status = ? AND sent_at >= ?",
        (transport, kind, SENT, to_iso(since)),
    ).fetchone()
    return int(found[0]), found[1]


def count_waiting(db: sqlite_utils.Database, transport: str, kind: str) -> int:
    """How many deliveries of this kind are still to be sent."""
    found = db.conn.execute(
        f"SELECT count(*) FROM deliveries WHERE transport = ? AND kind = ? "
        f"AND status IN ({marks(UNSENT)})",
        (transport, kind, *UNSENT),
    ).fetchone()
    return int(found[0])


def recipients(delivery: Delivery) -> list[str]:
    """A mail delivery's envelope recipients (stored as a JSON list)."""
    try:
        value = json.loads(delivery.recipient or "[]")
    except ValueError:
        return []
    return [str(item) for item in value] if isinstance(value, list) else []
