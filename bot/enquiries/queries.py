"""Reading enquiries: by id or reference, by status or user, their history and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlite_utils

from bot.deliveries import store as deliveries
from bot.enquiries.errors import EnquiryError
from bot.enquiries.records import FOLLOW_UP_POSTED, STATUSES, normalize_ref, select_rows
from bot.storage import (
    to_iso,
)


def count_created_since(
    db: sqlite_utils.Database, channel: str, user_id: str, since: datetime
) -> int:
    """How many enquiries this user created at or after `since`."""
    row = db.conn.execute(
        "SELECT count(*) FROM enquiries WHERE channel = ? AND user_id = ? AND created_at >= ?",
        (channel, user_id, to_iso(since)),
    ).fetchone()
    return int(row[0])


def require_by_id(db: sqlite_utils.Database, enquiry_id: int) -> dict[str, Any]:
    """One enquiry by id; EnquiryError when there is none."""
    rows = select_rows(db, "SELECT * FROM enquiries WHERE id = ?", (enquiry_id,))
    if not rows:
        raise EnquiryError(f"no enquiry with id {enquiry_id}")
    return rows[0]


def enquiry_by_id(db: sqlite_utils.Database, enquiry_id: int) -> dict[str, Any] | None:
    """One enquiry by id, or None."""
    rows = select_rows(db, "SELECT * FROM enquiries WHERE id = ?", (enquiry_id,))
    return rows[0] if rows else None


def enquiry_for_admin_post(db: sqlite_utils.Database, message_id: int) -> dict[str, Any] | None:
    """The enquiry an admin-chat post shows: its own post, or the post of a follow-up."""
    rows = select_rows(
        db,
        "SELECT * FROM enquiries WHERE admin_message_id = ? ORDER BY id DESC LIMIT 1",
        (message_id,),
    )
    if rows:
        return rows[0]
    rows = select_rows(
        db,
        "SELECT enquiries.* FROM deliveries JOIN enquiries ON enquiries.id = deliveries.enquiry_id "
        "WHERE deliveries.transport = 'telegram' AND deliveries.kind = ? "
        "AND deliveries.sent_ref = ? ORDER BY deliveries.id DESC LIMIT 1",
        (FOLLOW_UP_POSTED, str(message_id)),
    )
    return rows[0] if rows else None


def get_enquiry(db: sqlite_utils.Database, ref: str) -> dict[str, Any] | None:
    """One enquiry by reference (case-insensitive, padding optional), or None."""
    rows = select_rows(db, "SELECT * FROM enquiries WHERE ref = ?", (normalize_ref(ref),))
    return rows[0] if rows else None


def require_ref(db: sqlite_utils.Database, ref: str) -> dict[str, Any]:
    """One enquiry by reference; EnquiryError (code unknown_ref) when there is none."""
    row = get_enquiry(db, ref)
    if row is None:
        raise EnquiryError(
            f"no enquiry with reference {ref.strip()!r}", "unknown_ref", ref=ref.strip()
        )
    return row


def list_enquiries(db: sqlite_utils.Database, status: str = "all") -> list[dict[str, Any]]:
    """Enquiries with this status ('all' for every one), oldest first."""
    if status == "all":
        return select_rows(db, "SELECT * FROM enquiries ORDER BY created_at, id")
    if status not in STATUSES:
        raise EnquiryError(f"unknown status {status!r}: use open, answered, closed or all")
    return select_rows(
        db, "SELECT * FROM enquiries WHERE status = ? ORDER BY created_at, id", (status,)
    )


def user_enquiries(db: sqlite_utils.Database, channel: str, user_id: str) -> list[dict[str, Any]]:
    """This user's enquiries, oldest first."""
    return select_rows(
        db,
        "SELECT * FROM enquiries WHERE channel = ? AND user_id = ? ORDER BY created_at, id",
        (channel, user_id),
    )


def enquiry_history(db: sqlite_utils.Database, enquiry_id: int) -> list[dict[str, Any]]:
    """The audit events of one enquiry, oldest first."""
    return select_rows(
        db,
        "SELECT at, event, actor, detail FROM audit WHERE enquiry_id = ? ORDER BY at, id",
        (enquiry_id,),
    )


def enquiry_deliveries(db: sqlite_utils.Database, enquiry_id: int) -> list[dict[str, Any]]:
    """The messages queued for one enquiry, without their payloads."""
    return [
        {
            "id": item.id,
            "transport": item.transport,
            "kind": item.kind,
            "key": item.idempotency_key,
            "status": item.status,
            "attempts": item.attempts,
            "next_attempt_at": item.next_attempt_at,
            "last_error": item.last_error,
            "created_at": item.created_at,
            "sent_at": item.sent_at,
        }
        for item in deliveries.for_enquiry(db, enquiry_id)
    ]
