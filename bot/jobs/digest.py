"""The digest: the slot its cron serves, what it reports, and queueing its mail once."""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.deliveries import store as deliveries
from bot.mail.compose import AnsweredItem, Digest, DigestItem, digest_mail, mail_delivery
from bot.storage import from_iso, get_meta, set_meta, to_iso, transaction

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings import Settings

log = logging.getLogger(__name__)

# A digest whose scheduled time passed while the bot was down is still sent within this
# window after it; older ones are skipped (the next one reports everything anyway).
DIGEST_CATCH_UP = timedelta(hours=12)
DIGEST_LAST_RUN = "digest.last_run"
DIGEST_LAST_SLOT = "digest.last_slot"


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
