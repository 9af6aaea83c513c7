"""Claiming in SQL: a sender takes due rows of `deliveries` atomically (one UPDATE ...
RETURNING inside BEGIN IMMEDIATE, so of two senders exactly one gets each row) until its
lease ends, gives back what it did not try, and learns when the next row is due."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.deliveries.model import QUEUED, RETRYING, SENDING, Delivery
from bot.deliveries.sql import marks, rows
from bot.storage import from_iso, to_iso, transaction

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["claim", "next_due_at", "release_claims", "release_orphans"]


def claim(
    db: sqlite_utils.Database,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    transports: Iterable[str],
    kinds: Iterable[str] | None = None,
    exclude_kinds: Iterable[str] = (),
) -> list[Delivery]:
    """Atomically take up to `limit` due deliveries for `owner` until now + lease.

    Due: queued or waiting for a retry whose time has come, or claimed by a sender whose
    lease ran out (it crashed or hung). Oldest due first.
    """
    names = list(transports)
    if not names or limit <= 0:
        return []
    where = [f"transport IN ({marks(names)})"]
    params: list[Any] = list(names)
    if kinds is not None:
        wanted = list(kinds)
        if not wanted:
            return []
        where.append(f"kind IN ({marks(wanted)})")
        params.extend(wanted)
    excluded = list(exclude_kinds)
    if excluded:
        where.append(f"kind NOT IN ({marks(excluded)})")
        params.extend(excluded)
    stamp = to_iso(now)
    sql = (
        "UPDATE deliveries SET status = ?, lease_owner = ?, lease_until = ? WHERE id IN ("
        "SELECT id FROM deliveries WHERE "
        + " AND ".join(where)
        + " AND ((status IN (?, ?) AND next_attempt_at <= ?) OR (status = ? AND lease_until <= ?))"
        # Oldest first among what is due: after an outage a backlog goes out in the order
        # it was queued, whatever jitter each row's retry time got.
        " ORDER BY id LIMIT ?) RETURNING *"
    )
    with transaction(db):
        values = [SENDING, owner, to_iso(now + lease), *params]
        claimed = rows(
            db,
            sql,
            [*values, QUEUED, RETRYING, stamp, SENDING, stamp, limit],
        )
    return sorted(claimed, key=lambda d: d.id)


def release_orphans(
    db: sqlite_utils.Database, now: datetime, is_dead: Callable[[str], bool]
) -> int:
    """Claims of senders known to be gone (`is_dead(owner)`) are due again at once."""
    owners = [
        row[0]
        for row in db.conn.execute(
            "SELECT DISTINCT lease_owner FROM deliveries WHERE status = ?", (SENDING,)
        )
    ]
    gone = [owner for owner in owners if owner and is_dead(owner)]
    if not gone:
        return 0
    with transaction(db):
        cursor = db.conn.execute(
            f"UPDATE deliveries SET status = ?, next_attempt_at = ?, lease_owner = NULL, "
            f"lease_until = NULL WHERE status = ? AND lease_owner IN ({marks(gone)})",
            (RETRYING, to_iso(now), SENDING, *gone),
        )
    return int(cursor.rowcount or 0)


def release_claims(db: sqlite_utils.Database, owner: str, ids: Sequence[int]) -> int:
    """Give claimed rows back untouched (the sender stops before sending them)."""
    if not ids:
        return 0
    with transaction(db):
        cursor = db.conn.execute(
            f"UPDATE deliveries SET status = CASE WHEN attempts > 0 THEN ? ELSE ? END, "
            f"lease_owner = NULL, lease_until = NULL "
            f"WHERE status = ? AND lease_owner = ? AND id IN ({marks(ids)})",
            (RETRYING, QUEUED, SENDING, owner, *ids),
        )
    return int(cursor.rowcount or 0)


def next_due_at(
    db: sqlite_utils.Database, transports: Iterable[str], exclude_kinds: Iterable[str] = ()
) -> datetime | None:
    """When the next delivery through these transports is due (or its lease runs out)."""
    names = list(transports)
    excluded = list(exclude_kinds)
    if not names:
        return None
    extra = f" AND kind NOT IN ({marks(excluded)})" if excluded else ""
    found = db.conn.execute(
        f"SELECT min(CASE WHEN status = ? THEN lease_until ELSE next_attempt_at END) "
        f"FROM deliveries WHERE transport IN ({marks(names)}) AND status IN (?, ?, ?){extra}",
        (SENDING, *names, QUEUED, RETRYING, SENDING, *excluded),
    ).fetchone()
    return from_iso(found[0]) if found and found[0] else None
