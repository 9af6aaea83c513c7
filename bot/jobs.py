"""Scheduled work derived from database rows: reminders, the digest and retention."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.deliveries import store as deliveries
from bot.mail.compose import (
    AnsweredItem,
    Digest,
    DigestItem,
    digest_mail,
    grouped_reminder_mail,
    mail_delivery,
    reminder_mail,
)
from bot.mail.inbound.address import enquiry_reply_address
from bot.storage import from_iso, get_meta, record_audit, set_meta, to_iso, transaction

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings import Settings

log = logging.getLogger(__name__)

# Retention is not a matter of seconds: it runs at start and then every hour.
RETENTION_EVERY = timedelta(hours=1)
# A digest whose scheduled time passed while the bot was down is still sent within this
# window after it; older ones are skipped (the next one reports everything anyway).
DIGEST_CATCH_UP = timedelta(hours=12)
DIGEST_LAST_RUN = "digest.last_run"
# Conversations idle this long are deleted with everything they hold (draft form fields,
# the last FAQ questions): a user who walks away before confirming leaves nothing behind.
# privacy.retention applies when it is shorter.
SESSION_IDLE_PURGE = timedelta(days=30)
DIGEST_LAST_SLOT = "digest.last_slot"


# ---------------------------------------------------------------- meta


# ---------------------------------------------------------------- reminders


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


# ---------------------------------------------------------------- digest


def digest_trigger(settings: Settings) -> Any:
    """The CronTrigger of settings.digest (5-field crontab, in digest.timezone)."""
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(
        settings.digest.cron, timezone=ZoneInfo(settings.digest.timezone)
    )


def latest_slot(settings: Settings, now: datetime) -> datetime | None:
    """The latest scheduled digest time in (now - DIGEST_CATCH_UP, now], or None."""
    trigger = digest_trigger(settings)
    start = now - DIGEST_CATCH_UP
    latest = None
    fire = trigger.get_next_fire_time(None, start)
    # Bounded: even '* * * * *' has 720 slots in 12 h.
    for _ in range(100_000):
        if fire is None or fire > now:
            break
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire)
    return latest if latest is None else latest.astimezone(now.tzinfo)


def digest_slot_due(
    settings: Settings, now: datetime, last_slot: datetime | None
) -> datetime | None:
    """The scheduled digest time to serve now, unless it was served already."""
    slot = latest_slot(settings, now)
    if slot is None or (last_slot is not None and slot <= last_slot):
        return None
    return slot


def build_digest(db: sqlite_utils.Database, settings: Settings, now: datetime) -> Digest:
    """The digest as of `now`: open enquiries, and what happened since the last digest."""
    last = get_meta(db, DIGEST_LAST_RUN)
    since = from_iso(last) if last else None
    # Waiting longer than this before a first answer is overdue: reminders start then too.
    overdue_after = settings.reminders.first_after
    items = [
        DigestItem(
            ref=str(row["ref"]),
            organisation=str(row["organisation"] or ""),
            country=str(row["country"] or ""),
            channel=str(row["channel"] or ""),
            created_at=from_iso(row["created_at"]),
            age=now - from_iso(row["created_at"]),
            reminder_count=int(row["reminder_count"] or 0),
            question=str(row["question"] or ""),
            lang=str(row["lang"] or ""),
            overdue=now - from_iso(row["created_at"]) >= overdue_after,
            forwarded=row["forwarded_at"] is not None,
        )
        for row in db.query(
            "SELECT * FROM enquiries WHERE status = 'open' AND erased_at IS NULL "
            "ORDER BY created_at, id"
        )
    ]
    lower = to_iso(since) if since else ""
    upper = to_iso(now)
    answered = list(
        db.query(
            "SELECT ref, question, answered_by, created_at, answered_at, erased_at FROM enquiries "
            "WHERE answered_at IS NOT NULL AND answered_at > ? AND answered_at <= ? "
            "ORDER BY answered_at, id",
            [lower, upper],
        )
    )
    closed = next(
        iter(
            db.query(
                "SELECT COUNT(*) AS n FROM enquiries "
                "WHERE closed_at IS NOT NULL AND closed_at > ? AND closed_at <= ?",
                [lower, upper],
            )
        )
    )["n"]
    durations = [from_iso(r["answered_at"]) - from_iso(r["created_at"]) for r in answered]
    median = median_duration(durations)
    return Digest(
        generated_at=now,
        since=since,
        open=tuple(items),
        answered_count=len(answered),
        closed_count=int(closed),
        median_answer=median,
        # Erased ones are counted above but not listed: their question is gone.
        answered=tuple(
            AnsweredItem(
                ref=str(r["ref"]),
                question=str(r["question"] or ""),
                answered_by=str(r["answered_by"] or ""),
                waited=from_iso(r["answered_at"]) - from_iso(r["created_at"]),
            )
            for r in answered
            if r["erased_at"] is None and r["question"]
        ),
        waiting_mails=_held_back(db, settings),
        mails_per_hour=settings.enquiries.max_mails_per_hour,
    )


def _held_back(db: sqlite_utils.Database, settings: Settings) -> int:
    """Enquiry mails waiting in the queue while the hourly cap is on (0 without a cap)."""
    if settings.enquiries.max_mails_per_hour == 0:
        return 0
    return deliveries.count_waiting(db, "smtp", "enquiry")


def median_duration(values: list[timedelta]) -> timedelta | None:
    """The median of durations, or None for none."""
    if not values:
        return None
    return timedelta(seconds=statistics.median(v.total_seconds() for v in values))


@dataclass(frozen=True)
class DigestResult:
    """What a digest run did."""

    digest: Digest
    delivery_id: int | None
    slot: datetime | None


def queue_digest(
    db: sqlite_utils.Database, settings: Settings, now: datetime, *, slot: datetime | None = None
) -> DigestResult:
    """Build the digest and, unless empty, queue its mail; records the run in meta."""
    with transaction(db):
        digest = build_digest(db, settings, now)
        delivery_id = None
        if not digest.is_empty:
            message = digest_mail(settings, digest)
            delivery_id = deliveries.enqueue(db, mail_delivery(message, "digest", None), now)
            set_meta(db, DIGEST_LAST_RUN, to_iso(now))
        if slot is not None:
            set_meta(db, DIGEST_LAST_SLOT, to_iso(slot))
    return DigestResult(digest, delivery_id, slot)


def run_scheduled_digest(
    db: sqlite_utils.Database, settings: Settings, now: datetime, *, catch_up: bool = False
) -> DigestResult | None:
    """Serve the current digest slot once (None when there is no unserved slot).

    With `catch_up` (at start), a database that never served a slot only records the
    current one: a bot that was never running has no missed digest to send.
    """
    last = get_meta(db, DIGEST_LAST_SLOT)
    slot = digest_slot_due(settings, now, from_iso(last) if last else None)
    if slot is None:
        return None
    if catch_up and last is None:
        with transaction(db):
            set_meta(db, DIGEST_LAST_SLOT, to_iso(slot))
        return None
    result = queue_digest(db, settings, now, slot=slot)
    if result.delivery_id is None:
        log.info("digest: nothing to report, no mail")
    else:
        count = len(result.digest.open)
        log.info("digest queued (%d open %s)", count, "enquiry" if count == 1 else "enquiries")
    return result


# ---------------------------------------------------------------- retention


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
