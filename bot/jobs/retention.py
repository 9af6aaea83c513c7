"""Retention: erase the personal data whose time is up, and idle conversations."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.deliveries import store as deliveries
from bot.storage import from_iso, record_audit, to_iso, transaction

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings import Settings

log = logging.getLogger(__name__)

# Retention is not a matter of seconds: it runs at start and then every hour.
RETENTION_EVERY = timedelta(hours=1)
# Conversations idle this long are deleted with everything they hold (draft form fields,
# the last FAQ questions): a user who walks away before confirming leaves nothing behind.
# privacy.retention applies when it is shorter.
SESSION_IDLE_PURGE = timedelta(days=30)


def expired_enquiries(db: sqlite_utils.Database, settings: Settings, now: datetime) -> list[int]:
    """Ids of enquiries finished (closed, or answered) over privacy.retention ago, not erased."""
    cutoff = to_iso(now - settings.privacy.retention)
    # An answered enquiry is finished for the applicant even if nobody closes it: without
    # this its personal data would be kept for ever.
    return [
        int(row["id"])
        for row in db.query(
            "SELECT id FROM enquiries WHERE erased_at IS NULL AND ("
            "(status = 'closed' AND closed_at IS NOT NULL AND closed_at < ?) OR "
            "(status = 'answered' AND answered_at IS NOT NULL AND answered_at < ?)"
            ") ORDER BY id",
            [cutoff, cutoff],
        )
    ]


def session_idle_limit(settings: Settings) -> timedelta:
    """How long a conversation may stay idle before it is deleted."""
    return min(SESSION_IDLE_PURGE, settings.privacy.retention)


def purge_idle_sessions(db: sqlite_utils.Database, settings: Settings, now: datetime) -> int:
    """Delete conversations idle longer than session_idle_limit; returns how many."""
    cutoff = to_iso(now - session_idle_limit(settings))
    with transaction(db):
        count = int(
            db.conn.execute("DELETE FROM sessions WHERE updated_at < ?", (cutoff,)).rowcount or 0
        )
        if count:
            # Audited as a count only: which users they were is exactly what is being erased.
            record_audit(
                db, "erased", actor="system", now=now, detail={"scope": "sessions", "idle": count}
            )
    if count:
        log.info("retention: deleted %d idle %s", count, "session" if count == 1 else "sessions")
    return count


def apply_retention(db: sqlite_utils.Database, settings: Settings, now: datetime) -> int:
    """Erase the personal data that retention makes due; returns how many enquiries.

    Also deletes idle conversations (purge_idle_sessions).
    """
    purge_idle_sessions(db, settings, now)
    from bot.enquiries import erase_enquiries

    ids = expired_enquiries(db, settings, now)
    count = (
        erase_enquiries(db, ids, actor="system", now=now, reason="retention", settings=settings)
        if ids
        else 0
    )
    cutoff = to_iso(now - settings.privacy.retention)
    # Digests and notices list organisations too: their stored copies expire as well.
    with transaction(db):
        deliveries.drop_old_payloads(db, from_iso(cutoff))
        # Received mail that matched no enquiry (or was refused) expires the same way.
        db.execute(
            "UPDATE inbound_mail SET raw = NULL, answer = NULL, subject = NULL, sender = NULL "
            "WHERE enquiry_id IS NULL AND raw IS NOT NULL AND received_at < ?",
            [cutoff],
        )
    if count:
        log.info(
            "retention: erased personal data of %d %s",
            count,
            "enquiry" if count == 1 else "enquiries",
        )
    return count
