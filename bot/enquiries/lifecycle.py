"""Closing enquiries, erasing them and forgetting a user (the right to erasure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlite_utils

from bot.deliveries import store as deliveries
from bot.deliveries.model import Delivery
from bot.enquiries.errors import EnquiryError
from bot.enquiries.queries import require_by_id, require_ref
from bot.enquiries.records import (
    ERASED_NOTE,
    FOLLOW_UP_POSTED,
    PERSONAL_COLUMNS,
    POST_ERASED,
    chat_delivery,
)
from bot.settings import Settings
from bot.storage import (
    Database,
    record_audit,
    to_iso,
    transaction,
)


def close_enquiry(
    db: sqlite_utils.Database,
    ref: str,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> dict[str, Any]:
    """Close an open or answered enquiry, optionally with an internal note."""
    with transaction(db):
        row = require_ref(db, ref)
        if row["status"] == "closed":
            raise EnquiryError(f"{row['ref']} is already closed", "already_closed", ref=row["ref"])
        db.conn.execute(
            "UPDATE enquiries SET status = 'closed', closed_at = ?, closed_by = ?, "
            "close_note = ? WHERE id = ?",
            (to_iso(now), actor, (note or "").strip() or None, row["id"]),
        )
        # The note may name people, so the audit only says whether there was one.
        record_audit(
            db,
            "closed",
            actor=actor,
            now=now,
            enquiry_id=row["id"],
            ref=row["ref"],
            detail={"from": row["status"], "note": bool(note and note.strip())},
        )
        return require_by_id(db, row["id"])


def erase_enquiries(
    db: sqlite_utils.Database,
    enquiry_ids: Iterable[int],
    *,
    actor: str,
    now: datetime,
    reason: str,
    settings: Settings | None = None,
) -> int:
    """Erase the personal data of these enquiries and their pending mail and chat messages.

    A grouped reminder still queued that names one of them is withdrawn too; with
    `settings` it is queued again for the other enquiries it named.
    """
    ids = sorted(set(enquiry_ids))
    if not ids:
        return 0
    regroup: set[int] = set()
    nulls = ", ".join(f"{column} = NULL" for column in PERSONAL_COLUMNS)
    refs: list[str] = []
    with transaction(db):
        for enquiry_id in ids:
            found = db.conn.execute(
                "SELECT ref, admin_message_id FROM enquiries WHERE id = ?", (enquiry_id,)
            ).fetchone()
            if found is None:
                continue
            if found[0]:
                refs.append(found[0])
            db.conn.execute(
                f"UPDATE enquiries SET {nulls}, faq_history = '[]', erased_at = ? WHERE id = ?",
                (to_iso(now), enquiry_id),
            )
            # Follow-ups posted in the admin chat show the applicant's words: edited too.
            follow_up_posts = [
                ref
                for (ref,) in db.conn.execute(
                    "SELECT sent_ref FROM deliveries WHERE enquiry_id = ? AND kind = ? "
                    "AND status = 'sent' AND sent_ref IS NOT NULL ORDER BY id",
                    (enquiry_id, FOLLOW_UP_POSTED),
                ).fetchall()
            ]
            # Unsent mail carries the data in its raw bytes; sent mail keeps only its metadata.
            pending = deliveries.cancel_for_enquiry(db, enquiry_id, ERASED_NOTE)
            for message_id in follow_up_posts:
                chat_delivery(
                    db,
                    channel="telegram",
                    kind=POST_ERASED,
                    enquiry_id=enquiry_id,
                    recipient="",
                    payload=str(message_id),
                    now=now,
                )
            # The admin-chat post shows the applicant's data: the channel edits it to its
            # erased form (no recipient: the admin chat in force when it is delivered).
            if found[1] is not None:
                chat_delivery(
                    db,
                    channel="telegram",
                    kind=POST_ERASED,
                    enquiry_id=enquiry_id,
                    recipient="",
                    payload="",
                    now=now,
                )
            # Received replies quote the enquiry: keep only what happened, not the mail.
            db.conn.execute(
                "UPDATE inbound_mail SET raw = NULL, answer = NULL, subject = NULL "
                "WHERE enquiry_id = ?",
                (enquiry_id,),
            )
            record_audit(
                db,
                "erased",
                actor=actor,
                now=now,
                enquiry_id=enquiry_id,
                ref=found[0],
                detail={"reason": reason, "deliveries_cancelled": pending},
            )
        regroup = _withdraw_grouped_reminders(db, ids) - set(ids)
        if settings is not None and regroup:
            from bot.jobs.reminders import queue_grouped_reminder

            queue_grouped_reminder(db, settings, sorted(regroup), now)
    if refs and isinstance(db, Database):
        # Copies outside the database (the embedded mail store's files) go too.
        db.erased(refs)
    return len(ids)


def _named_refs(delivery: Delivery) -> list[str]:
    """The references a grouped reminder names (its X-Clusterbot-Refs header)."""
    from email.parser import BytesHeaderParser

    payload = delivery.payload
    data = payload if isinstance(payload, bytes) else (payload or "").encode()
    header = BytesHeaderParser().parsebytes(data).get("X-Clusterbot-Refs", "")
    return [ref.strip() for ref in str(header).split(",") if ref.strip()]


def grouped_reminder_moot(db: sqlite_utils.Database, delivery: Delivery) -> str | None:
    """A grouped reminder whose enquiries were all answered, closed or erased meanwhile."""
    refs = _named_refs(delivery)
    if not refs:
        return None
    still_open = db.conn.execute(
        f"SELECT count(*) FROM enquiries WHERE status = 'open' AND erased_at IS NULL "
        f"AND ref IN ({', '.join('?' for _ in refs)})",
        tuple(refs),
    ).fetchone()[0]
    return None if still_open else "no enquiry it names is still open"


def _withdraw_grouped_reminders(db: sqlite_utils.Database, erased: Sequence[int]) -> set[int]:
    """Withdraw unsent grouped reminders naming an erased enquiry; the ids they named."""
    refs = {
        str(row[0]): int(row[1])
        for row in db.conn.execute(
            f"SELECT ref, id FROM enquiries WHERE ref IS NOT NULL AND id IN "
            f"({', '.join('?' for _ in erased)})",
            tuple(erased),
        )
    }
    named: set[int] = set()
    for delivery in deliveries.unsent_of_kind(db, "reminders"):
        mentioned = _named_refs(delivery)
        if not any(ref in refs for ref in mentioned):
            continue
        deliveries.cancel(db, delivery.id, ERASED_NOTE)
        named.update(
            int(row[0])
            for row in db.conn.execute(
                f"SELECT id FROM enquiries WHERE ref IN ({', '.join('?' for _ in mentioned)})",
                tuple(mentioned),
            )
        )
    return named


# Where a Telegram update names its sender and chat (message, edited message, button press).
_UPDATE_USER_PATHS = (
    "$.message.from.id",
    "$.message.chat.id",
    "$.edited_message.from.id",
    "$.edited_message.chat.id",
    "$.callback_query.from.id",
    "$.callback_query.message.chat.id",
)


def _forget_updates(db: sqlite_utils.Database, channel: str, user_id: str) -> int:
    """Delete the handled Telegram updates this user sent (their payloads hold the texts)."""
    if channel != "telegram":
        return 0
    try:
        telegram_id = int(user_id)
    except ValueError:
        return 0
    # Unhandled updates stay: they are still to be processed (and are pruned once handled).
    matches = " OR ".join(f"json_extract(payload, '{path}') = :id" for path in _UPDATE_USER_PATHS)
    cursor = db.conn.execute(
        f"DELETE FROM updates WHERE handled_at IS NOT NULL AND json_valid(payload) AND ({matches})",
        {"id": telegram_id},
    )
    return int(cursor.rowcount)


def forget_user(
    db: sqlite_utils.Database,
    channel: str,
    user_id: str,
    *,
    now: datetime,
    settings: Settings | None = None,
) -> int:
    """Erase everything this user told the bot; returns how many enquiries were erased.

    In one transaction: the user's open enquiries are closed (so reminders and digests stop),
    every enquiry's personal data is erased, the session, pending chat messages and handled
    Telegram updates are deleted. The audit records counts only.
    """
    with transaction(db):
        found = db.conn.execute(
            "SELECT id, ref, status FROM enquiries WHERE channel = ? AND user_id = ?",
            (channel, user_id),
        ).fetchall()
        ids = [row[0] for row in found]
        still_open = [(row[0], row[1]) for row in found if row[2] == "open"]
        stamp = to_iso(now)
        for enquiry_id, ref in still_open:
            db.conn.execute(
                "UPDATE enquiries SET status = 'closed', closed_at = ?, closed_by = 'applicant' "
                "WHERE id = ?",
                (stamp, enquiry_id),
            )
            record_audit(
                db,
                "closed",
                actor="applicant",
                now=now,
                enquiry_id=enquiry_id,
                ref=ref,
                detail={"from": "open", "reason": "erased"},
            )
        count = erase_enquiries(
            db, ids, actor="applicant", now=now, reason="user request", settings=settings
        )
        # After the erasure, which clears close notes: this one names nobody.
        for enquiry_id, _ in still_open:
            db.conn.execute(
                "UPDATE enquiries SET close_note = ? WHERE id = ?", (ERASED_NOTE, enquiry_id)
            )
        sessions = db.conn.execute(
            "DELETE FROM sessions WHERE channel = ? AND user_id = ?", (channel, user_id)
        ).rowcount
        # Chat messages addressed to the user outside any enquiry (e.g. Telegram replies).
        messages = deliveries.cancel_for_recipient(db, channel, user_id, ERASED_NOTE)
        updates = _forget_updates(db, channel, user_id)
        record_audit(
            db,
            "erased",
            actor="applicant",
            now=now,
            detail={
                "scope": "user",
                "enquiries": count,
                "closed": len(still_open),
                "sessions": sessions,
                "notifications": messages,
                "updates": updates,
            },
        )
    return count
