"""Where the IMAP reader stands: the folder's cursor (UIDVALIDITY + last UID), the last
poll and error, and `inbox_status` for `clusterbot inbox status`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.storage import get_meta, to_iso

if TYPE_CHECKING:
    import sqlite_utils

    from bot.mail.inbound.imap import FolderState
    from bot.settings import Settings

LAST_POLL = "inbox.last_poll"
LAST_ERROR = "inbox.last_error"


@dataclass(frozen=True)
class Cursor:
    """How far the bot has read a folder."""

    folder: str
    uidvalidity: int
    last_uid: int
    updated_at: str


def load_cursor(db: sqlite_utils.Database, folder: str) -> Cursor | None:
    """The stored cursor of `folder`, or None before the first message."""
    for row in db.query("SELECT * FROM inbox_cursor WHERE folder = ?", [folder]):
        return Cursor(row["folder"], row["uidvalidity"], row["last_uid"], row["updated_at"])
    return None


def save_cursor(
    db: sqlite_utils.Database, folder: str, uidvalidity: int, last_uid: int, now: datetime
) -> None:
    """Move the cursor (inside the caller's transaction)."""
    db.execute(
        "INSERT INTO inbox_cursor (folder, uidvalidity, last_uid, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, "
        "last_uid = excluded.last_uid, updated_at = excluded.updated_at",
        [folder, uidvalidity, last_uid, to_iso(now)],
    )


def start_after(cursor: Cursor | None, state: FolderState) -> int:
    """The UID to read after: the cursor's, or 0 for a new (or re-created) folder."""
    if cursor is None or cursor.uidvalidity != state.uidvalidity:
        # A new folder (or one re-created): read it all; Message-IDs already seen are skipped.
        return 0
    return cursor.last_uid


def inbox_status(db: sqlite_utils.Database, settings: Settings) -> dict[str, Any]:
    """The cursor, the last poll and error, and the messages not relayed, for the operator."""
    cursor = load_cursor(db, settings.inbox.folder)
    counts = {
        str(row["status"]): int(row["n"])
        for row in db.query("SELECT status, COUNT(*) AS n FROM inbound_mail GROUP BY status")
    }
    pending = list(
        db.query(
            "SELECT i.id, i.received_at, i.status, i.reason, i.sender, i.subject, e.ref "
            "FROM inbound_mail i LEFT JOIN enquiries e ON e.id = i.enquiry_id "
            "WHERE i.status IN ('unmatched', 'refused') ORDER BY i.id DESC LIMIT 50"
        )
    )
    return {
        "configured": settings.inbox.configured,
        "folder": settings.inbox.folder,
        "cursor": None
        if cursor is None
        else {
            "uidvalidity": cursor.uidvalidity,
            "last_uid": cursor.last_uid,
            "updated_at": cursor.updated_at,
        },
        "last_poll": get_meta(db, LAST_POLL),
        "last_error": get_meta(db, LAST_ERROR),
        "counts": counts,
        "not_relayed": pending,
    }
