"""Reminders to the secretariat, derived from the enquiry rows: when each is due, and
queueing them (one grouped mail per round, or one per enquiry)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.deliveries import store as deliveries
from bot.mail.compose import grouped_reminder_mail, mail_delivery, reminder_mail
from bot.mail.inbound.address import enquiry_reply_address
from bot.storage import from_iso, record_audit, to_iso, transaction

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings import Settings

log = logging.getLogger(__name__)


def reminder_due_at(enquiry: dict[str, Any], settings: Settings) -> datetime | None:
    """When this enquiry's next reminder is due, or None if it gets no (more) reminders."""
    if enquiry["status"] != "open" or enquiry.get("erased_at") or not enquiry.get("forwarded_at"):
        return None
    count = int(enquiry.get("reminder_count") or 0)
    if count >= settings.reminders.max_count:
        return None
    if count == 0 or not enquiry.get("last_reminder_at"):
        return from_iso(enquiry["forwarded_at"]) + settings.reminders.first_after
    # Counted from the last reminder actually written, so downtime or a clock jump yields
    # one late reminder, never a burst of the missed ones.
    return from_iso(enquiry["last_reminder_at"]) + settings.reminders.repeat_every


def due_reminders(
    db: sqlite_utils.Database, settings: Settings, now: datetime
) -> list[dict[str, Any]]:
    """Open, forwarded enquiries whose next reminder is due at `now`, oldest first."""
    if settings.reminders.max_count == 0:
        return []
    rows = db.query(
        "SELECT * FROM enquiries WHERE status = 'open' AND forwarded_at IS NOT NULL "
        "AND erased_at IS NULL AND reminder_count < ? ORDER BY created_at, id",
        [settings.reminders.max_count],
    )
    due = []
    for row in rows:
        at = reminder_due_at(row, settings)
        if at is not None and at <= now:
            due.append(row)
    return due


def next_reminder_at(db: sqlite_utils.Database, settings: Settings) -> datetime | None:
    """The instant the next reminder is due (None: no open enquiry gets one)."""
    if settings.reminders.max_count == 0:
        return None
    moments = [
        at
        for row in db.query(
            "SELECT * FROM enquiries WHERE status = 'open' AND forwarded_at IS NOT NULL "
            "AND erased_at IS NULL AND reminder_count < ?",
            [settings.reminders.max_count],
        )
        if (at := reminder_due_at(row, settings)) is not None
    ]
    return min(moments) if moments else None


def send_reminders(db: sqlite_utils.Database, settings: Settings, now: datetime) -> list[str]:
    """Queue every due reminder; returns the references reminded.

    With reminders.grouped (the default) the round's reminders go out as one e-mail that
    names each reference; each enquiry's counter and 'reminded' audit are its own either way.
    """
    if settings.reminders.grouped:
        return _send_grouped_reminders(db, settings, now)
    reminded = []
    for candidate in due_reminders(db, settings, now):
        # One transaction per enquiry: re-read, re-check, then mail + counter + audit
        # together, so a crash or a second process can never write the same reminder twice.
        with transaction(db):
            row = _still_due(db, settings, int(candidate["id"]), now)
            if row is None:
                continue
            count = _count_reminder(db, row, now)
            original = deliveries.first_key(db, int(row["id"]), "enquiry")
            message = reminder_mail(
                settings,
                row,
                original,
                count,
                now,
                reply_address=enquiry_reply_address(db, settings, str(row["ref"])),
            )
            deliveries.enqueue(db, mail_delivery(message, "reminder", int(row["id"])), now)
        reminded.append(str(row["ref"]))
        log.info("reminder %d queued for %s", count, row["ref"])
    return reminded


def queue_grouped_reminder(
    db: sqlite_utils.Database, settings: Settings, enquiry_ids: Sequence[int], now: datetime
) -> str | None:
    """Queue again a grouped reminder withdrawn because an enquiry it named was erased: for
    the others still open, each with the reminder number already counted (no new count).
    Returns the new delivery's key, or None when none of them is still open."""
    marks = ", ".join("?" for _ in enquiry_ids)
    rows = list(
        db.query(
            f"SELECT * FROM enquiries WHERE id IN ({marks}) AND status = 'open' "
            "AND erased_at IS NULL AND reminder_count > 0 ORDER BY created_at, id",
            list(enquiry_ids),
        )
    )
    if not rows:
        return None
    reminded = [(row, int(row["reminder_count"])) for row in rows]
    originals = [
        key
        for row in rows
        if (key := deliveries.first_key(db, int(row["id"]), "enquiry")) is not None
    ]
    message = grouped_reminder_mail(settings, reminded, now, originals)
    deliveries.enqueue(db, mail_delivery(message, "reminders", None), now)
    return str(message["Message-ID"])


def _still_due(
    db: sqlite_utils.Database, settings: Settings, enquiry_id: int, now: datetime
) -> dict[str, Any] | None:
    """The enquiry re-read inside the transaction, if its reminder is (still) due."""
    rows = list(db.query("SELECT * FROM enquiries WHERE id = ?", [enquiry_id]))
    if not rows:
        return None
    at = reminder_due_at(rows[0], settings)
    return rows[0] if at is not None and at <= now else None


def _count_reminder(db: sqlite_utils.Database, row: dict[str, Any], now: datetime) -> int:
    """Count one more reminder for this enquiry (counter and audit); its number."""
    count = int(row["reminder_count"] or 0) + 1
    db.execute(
        "UPDATE enquiries SET reminder_count = ?, last_reminder_at = ? WHERE id = ?",
        [count, to_iso(now), row["id"]],
    )
    record_audit(
        db,
        "reminded",
        actor="system",
        now=now,
        enquiry_id=int(row["id"]),
        ref=row["ref"],
        detail={"count": count},
    )
    return count


def _send_grouped_reminders(
    db: sqlite_utils.Database, settings: Settings, now: datetime
) -> list[str]:
    """One e-mail for the whole round: counters, audits and the mail in one transaction."""
    candidates = due_reminders(db, settings, now)
    if not candidates:
        return []
    reminded: list[tuple[dict[str, Any], int]] = []
    with transaction(db):
        for candidate in candidates:
            row = _still_due(db, settings, int(candidate["id"]), now)
            if row is not None:
                reminded.append((row, _count_reminder(db, row, now)))
        if not reminded:
            return []
        originals = [
            key
            for row, _ in reminded
            if (key := deliveries.first_key(db, int(row["id"]), "enquiry")) is not None
        ]
        message = grouped_reminder_mail(settings, reminded, now, originals)
        deliveries.enqueue(db, mail_delivery(message, "reminders", None), now)
    refs = [str(row["ref"]) for row, _ in reminded]
    log.info("grouped reminder queued for %s", ", ".join(refs))
    return refs
