"""SQL for operators on `deliveries` (`clusterbot deliveries`, `clusterbot check`): list,
retry dead ones, report problems, count."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from bot.deliveries.model import CANCELLED, DEAD, QUEUED, RETRYING, SENDING, SENT, Delivery
from bot.deliveries.sql import STUCK_ATTEMPTS, marks, rows
from bot.storage import record_audit, to_iso, transaction

if TYPE_CHECKING:
    import sqlite_utils

# Statuses operators name on the command line; `pending` and `failed` are the outbox's
# words, kept so that old habits (and scripts) still work.
LIST_STATUSES: dict[str, tuple[str, ...]] = {
    "queued": (QUEUED,),
    "sending": (SENDING,),
    "sent": (SENT,),
    "failed-temporary": (RETRYING,),
    "dead": (DEAD,),
    "cancelled": (CANCELLED,),
    "pending": (QUEUED, SENDING, RETRYING),
    "failed": (DEAD,),
}

__all__ = [
    "LIST_STATUSES",
    "DeliveryError",
    "counts",
    "enquiry_ref",
    "list_deliveries",
    "problems",
    "requeue",
]


class DeliveryError(Exception):
    """An operator request on the queue that cannot be done (unknown id, wrong state)."""


def list_deliveries(
    db: sqlite_utils.Database, status: str | None = None, transport: str | None = None
) -> list[Delivery]:
    """Deliveries, oldest first, optionally of one status (see LIST_STATUSES) or transport."""
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        statuses = LIST_STATUSES.get(status)
        if statuses is None:
            raise DeliveryError(f"unknown status {status!r}: use {', '.join(LIST_STATUSES)}")
        where.append(f"status IN ({marks(statuses)})")
        params.extend(statuses)
    if transport is not None:
        where.append("transport = ?")
        params.append(transport)
    sql = "SELECT * FROM deliveries" + (" WHERE " + " AND ".join(where) if where else "")
    return rows(db, sql + " ORDER BY id", params)


def enquiry_ref(db: sqlite_utils.Database, enquiry_id: int | None) -> str | None:
    """The reference of a delivery's enquiry, if any."""
    if enquiry_id is None:
        return None
    found = db.conn.execute("SELECT ref FROM enquiries WHERE id = ?", (enquiry_id,)).fetchone()
    return str(found[0]) if found and found[0] else None


def requeue(
    db: sqlite_utils.Database,
    which: int | Literal["all_failed"],
    now: datetime,
    *,
    actor: str = "cli",
) -> list[int]:
    """Put dead deliveries back in the queue, due now, with a fresh count; their ids."""
    with transaction(db):
        if which == "all_failed":
            found = rows(db, "SELECT * FROM deliveries WHERE status = ? ORDER BY id", (DEAD,))
        else:
            found = rows(db, "SELECT * FROM deliveries WHERE id = ?", (which,))
            if not found:
                raise DeliveryError(f"no delivery with id {which}")
            if found[0].status != DEAD:
                raise DeliveryError(
                    f"delivery {which} is {found[0].status}: only dead (failed) deliveries "
                    "can be retried"
                )
        for row in found:
            db.conn.execute(
                "UPDATE deliveries SET status = ?, attempts = 0, next_attempt_at = ? WHERE id = ?",
                (QUEUED, to_iso(now), row.id),
            )
            record_audit(
                db,
                "requeued",
                actor=actor,
                now=now,
                enquiry_id=row.enquiry_id,
                ref=enquiry_ref(db, row.enquiry_id),
                detail={"delivery": row.id},
            )
    return [row.id for row in found]


def problems(db: sqlite_utils.Database) -> list[str]:
    """One line per dead or stuck delivery, for `clusterbot check`."""
    lines = []
    for row in rows(
        db,
        "SELECT * FROM deliveries WHERE status = ? OR (status = ? AND attempts >= ?) ORDER BY id",
        (DEAD, RETRYING, STUCK_ATTEMPTS),
    ):
        ref = enquiry_ref(db, row.enquiry_id)
        what = f"delivery {row.id} ({row.transport} {row.kind}{', ' + ref if ref else ''})"
        if row.status == DEAD:
            lines.append(
                f"{what}: refused permanently: {row.last_error}; fix the cause, then run "
                f"'clusterbot deliveries retry {row.id}'"
            )
        else:
            hint = (
                "check the [smtp] settings with 'clusterbot check --smtp'"
                if row.transport == "smtp"
                else f"check the {row.transport} settings"
            )
            lines.append(
                f"{what}: still not delivered after {row.attempts} attempts: "
                f"{row.last_error}; {hint}"
            )
    return lines


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    """How many deliveries are in each status."""
    result = dict.fromkeys((QUEUED, SENDING, SENT, RETRYING, DEAD, CANCELLED), 0)
    for status, number in db.conn.execute(
        "SELECT status, count(*) FROM deliveries GROUP BY status"
    ):
        result[str(status)] = int(number)
    return result
