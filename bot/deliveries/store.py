"""The SQL of the `deliveries` table: every statement on it lives here, as a named function.

This is the only module that inserts deliveries (enqueue). Claims are atomic: one UPDATE
... RETURNING inside BEGIN IMMEDIATE, so of two senders on one database exactly one gets
each row; outcomes are recorded only by the sender that holds the lease.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

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
from bot.storage import from_iso, record_audit, to_iso, transaction

if TYPE_CHECKING:
    import sqlite_utils

# Kept short in the table, the admin chat and the log: a server reply can be long.
MAX_ERROR = 500
# Deliveries whose last error starts so could not reach their server; they become due at
# once when a delivery through the same transport succeeds again.
UNREACHABLE = "cannot connect"
# A row waiting for a retry this many attempts is reported by `clusterbot check` as stuck.
STUCK_ATTEMPTS = 8
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
_UNSENT = (QUEUED, SENDING, RETRYING)


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


class DeliveryError(Exception):
    """An operator request on the queue that cannot be done (unknown id, wrong state)."""


def short(text: str) -> str:
    """One line, at most MAX_ERROR characters."""
    return " ".join(text.split())[:MAX_ERROR]


def _rows(db: sqlite_utils.Database, sql: str, params: Sequence[Any] = ()) -> list[Delivery]:
    cursor = db.conn.execute(sql, tuple(params))
    names = [column[0] for column in cursor.description]
    return [Delivery.from_row(dict(zip(names, values, strict=True))) for values in cursor]


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


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


# ---------------------------------------------------------------- claiming


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
    where = [f"transport IN ({_marks(names)})"]
    params: list[Any] = list(names)
    if kinds is not None:
        wanted = list(kinds)
        if not wanted:
            return []
        where.append(f"kind IN ({_marks(wanted)})")
        params.extend(wanted)
    excluded = list(exclude_kinds)
    if excluded:
        where.append(f"kind NOT IN ({_marks(excluded)})")
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
        claimed = _rows(
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
            f"lease_until = NULL WHERE status = ? AND lease_owner IN ({_marks(gone)})",
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
            f"WHERE status = ? AND lease_owner = ? AND id IN ({_marks(ids)})",
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
    extra = f" AND kind NOT IN ({_marks(excluded)})" if excluded else ""
    found = db.conn.execute(
        f"SELECT min(CASE WHEN status = ? THEN lease_until ELSE next_attempt_at END) "
        f"FROM deliveries WHERE transport IN ({_marks(names)}) AND status IN (?, ?, ?){extra}",
        (SENDING, *names, QUEUED, RETRYING, SENDING, *excluded),
    ).fetchone()
    return from_iso(found[0]) if found and found[0] else None


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


def retarget(db: sqlite_utils.Database, transport: str, old: str, new: str) -> int:
    """Unsent deliveries to recipient `old` go to `new` (a chat that changed its id)."""
    cursor = db.conn.execute(
        f"UPDATE deliveries SET recipient = ? WHERE transport = ? AND recipient = ? "
        f"AND status IN ({_marks(_UNSENT)})",
        (new, transport, old, *_UNSENT),
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
        claimed = _rows(
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
        f"AND status IN ({_marks(_UNSENT)})",
        (CANCELLED, why, transport, recipient, *_UNSENT),
    )
    db.conn.execute(
        "UPDATE deliveries SET payload = NULL WHERE transport = ? AND recipient = ?",
        (transport, recipient),
    )
    return int(cursor.rowcount or 0)


def release_unreachable(db: sqlite_utils.Database, transport: str, at: datetime) -> int:
    """The transport reached its server again: deliveries waiting only for that are due."""
    with transaction(db):
        cursor = db.conn.execute(
            "UPDATE deliveries SET next_attempt_at = ? WHERE transport = ? AND status = ? "
            "AND next_attempt_at > ? AND last_error LIKE ?",
            (to_iso(at), transport, RETRYING, to_iso(at), UNREACHABLE + "%"),
        )
    return int(cursor.rowcount or 0)


# ---------------------------------------------------------------- domain look-ups


def get(db: sqlite_utils.Database, delivery_id: int) -> Delivery | None:
    """One delivery by id."""
    found = _rows(db, "SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
    return found[0] if found else None


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
        f"SELECT DISTINCT enquiry_id FROM deliveries WHERE idempotency_key IN ({_marks(keys)}) "
        f"AND kind IN ({_marks(kinds)}) AND enquiry_id IS NOT NULL ORDER BY enquiry_id",
        (*keys, *kinds),
    ).fetchall()
    return [int(row[0]) for row in found]


def mark_bounced(db: sqlite_utils.Database, keys: Sequence[str], error: str) -> list[Delivery]:
    """Sent deliveries a bounce reports on become dead (inside the caller's transaction);
    the ones changed."""
    changed: list[Delivery] = []
    for key in dict.fromkeys(keys):
        changed += _rows(
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
        f"AND status IN ({_marks((SENT, *_UNSENT))})",
        (enquiry_id, kind, besides, SENT, *_UNSENT),
    ).fetchone()
    return int(found[0])


def for_enquiry(db: sqlite_utils.Database, enquiry_id: int) -> list[Delivery]:
    """An enquiry's deliveries, oldest first."""
    return _rows(db, "SELECT * FROM deliveries WHERE enquiry_id = ? ORDER BY id", (enquiry_id,))


def cancel_for_enquiry(db: sqlite_utils.Database, enquiry_id: int, why: str) -> int:
    """Erasure: withdraw the enquiry's unsent deliveries and drop every payload (inside the
    caller's transaction; a sender holding one finds its claim gone). Returns how many
    were withdrawn."""
    cursor = db.conn.execute(
        f"UPDATE deliveries SET status = ?, last_error = ?, lease_owner = NULL, "
        f"lease_until = NULL WHERE enquiry_id = ? AND status IN ({_marks(_UNSENT)})",
        (CANCELLED, why, enquiry_id, *_UNSENT),
    )
    db.conn.execute(
        "UPDATE deliveries SET payload = NULL, recipient = NULL, sender = NULL "
        "WHERE enquiry_id = ?",
        (enquiry_id,),
    )
    return int(cursor.rowcount or 0)


def unsent_of_kind(db: sqlite_utils.Database, kind: str) -> list[Delivery]:
    """Deliveries of one kind not sent yet (queued, being sent, or waiting for a retry)."""
    return _rows(
        db,
        f"SELECT * FROM deliveries WHERE kind = ? AND status IN ({_marks(_UNSENT)}) ORDER BY id",
        (kind, *_UNSENT),
    )


def cancel(db: sqlite_utils.Database, delivery_id: int, why: str) -> bool:
    """Withdraw one unsent delivery and drop its payload (inside the caller's transaction)."""
    cursor = db.conn.execute(
        f"UPDATE deliveries SET status = ?, last_error = ?, lease_owner = NULL, "
        f"lease_until = NULL, payload = NULL WHERE id = ? AND status IN ({_marks(_UNSENT)})",
        (CANCELLED, why, delivery_id, *_UNSENT),
    )
    return bool(cursor.rowcount)


def drop_old_payloads(db: sqlite_utils.Database, before: datetime) -> int:
    """Retention: finished deliveries without an enquiry (digests, notices) older than
    `before` lose their payload (inside the caller's transaction)."""
    cursor = db.conn.execute(
        f"UPDATE deliveries SET payload = NULL WHERE enquiry_id IS NULL "
        f"AND status NOT IN ({_marks(_UNSENT)}) AND payload IS NOT NULL AND created_at < ?",
        (*_UNSENT, to_iso(before)),
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
        f"AND status IN ({_marks(_UNSENT)})",
        (transport, kind, *_UNSENT),
    ).fetchone()
    return int(found[0])


# ---------------------------------------------------------------- operator tools


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
        where.append(f"status IN ({_marks(statuses)})")
        params.extend(statuses)
    if transport is not None:
        where.append("transport = ?")
        params.append(transport)
    sql = "SELECT * FROM deliveries" + (" WHERE " + " AND ".join(where) if where else "")
    return _rows(db, sql + " ORDER BY id", params)


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
            rows = _rows(db, "SELECT * FROM deliveries WHERE status = ? ORDER BY id", (DEAD,))
        else:
            rows = _rows(db, "SELECT * FROM deliveries WHERE id = ?", (which,))
            if not rows:
                raise DeliveryError(f"no delivery with id {which}")
            if rows[0].status != DEAD:
                raise DeliveryError(
                    f"delivery {which} is {rows[0].status}: only dead (failed) deliveries "
                    "can be retried"
                )
        for row in rows:
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
    return [row.id for row in rows]


def problems(db: sqlite_utils.Database) -> list[str]:
    """One line per dead or stuck delivery, for `clusterbot check`."""
    lines = []
    for row in _rows(
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


def recipients(delivery: Delivery) -> list[str]:
    """A mail delivery's envelope recipients (stored as a JSON list)."""
    try:
        value = json.loads(delivery.recipient or "[]")
    except ValueError:
        return []
    return [str(item) for item in value] if isinstance(value, list) else []
