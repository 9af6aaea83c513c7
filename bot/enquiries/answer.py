"""Answering an enquiry (by the admin chat, the CLI or mail), relaying it, follow-ups."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlite_utils

from bot.deliveries import store as deliveries
from bot.deliveries.model import NewDelivery
from bot.enquiries.admin_chat import admin_chat_id
from bot.enquiries.errors import EnquiryError
from bot.enquiries.queries import require_by_id, require_ref
from bot.enquiries.records import FOLLOW_UP_POSTED, WEB_CHANNEL, chat_delivery
from bot.enquiries.texts import enquiry_text
from bot.settings import Settings
from bot.storage import (
    record_audit,
    to_iso,
    transaction,
)


def _record_answer(
    db: sqlite_utils.Database,
    row: Mapping[str, Any],
    answer: str | None,
    *,
    actor: str,
    now: datetime,
    detail: Mapping[str, Any],
) -> dict[str, Any]:
    # One place sets the answered state, so both ways of answering audit it alike.
    db.conn.execute(
        "UPDATE enquiries SET status = 'answered', answered_at = ?, answered_by = ?, "
        "answer = COALESCE(?, answer) WHERE id = ?",
        (to_iso(now), actor, answer, row["id"]),
    )
    record_audit(
        db, "answered", actor=actor, now=now, enquiry_id=row["id"], ref=row["ref"], detail=detail
    )
    return require_by_id(db, row["id"])


def _attachments_note(row: Mapping[str, Any], count: int) -> str:
    lang = str(row.get("lang") or "en")
    return enquiry_text(lang, "answer_attachments", count=count, ref=str(row["ref"]))


def _queue_mail(
    db: sqlite_utils.Database, message: Any, kind: str, enquiry_id: int, now: datetime
) -> None:
    from bot.mail.compose import mail_delivery

    deliveries.enqueue(db, mail_delivery(message, kind, enquiry_id), now)


def answer_enquiry(
    db: sqlite_utils.Database,
    ref: str,
    text: str,
    *,
    actor: str,
    now: datetime,
    settings: Settings | None = None,
    attachments: int = 0,
    answered_now: bool = False,
) -> dict[str, Any]:
    """Record the secretariat's answer and queue it for the applicant.

    It goes to the applicant's chat, and, given `settings`, by e-mail too (their question
    quoted; Reply-To the bot's address for the enquiry when an inbox reads replies).
    `attachments`: how many files the secretariat's e-mail had (not forwarded; the applicant
    is told). Should the answer reach the applicant by no way at all (they blocked the bot
    and there is no e-mail), the delivery's outcome (DeliveryRules) opens the enquiry again
    and tells the secretariat what to do. `answered_now`: answered elsewhere, the text is
    only a notice, and the enquiry stays answered whatever becomes of it.
    """
    from bot.mail.compose import answer_mail
    from bot.mail.inbound.address import enquiry_reply_address

    answer = text.strip()
    if not answer:
        raise EnquiryError("the answer is empty", "empty_answer")
    with transaction(db):
        row = require_ref(db, ref)
        # Erased first: "erased" tells the secretariat more than the "closed" it implies.
        if row["erased_at"] is not None:
            raise EnquiryError(
                f"{row['ref']} was erased at the applicant's request", "erased", ref=row["ref"]
            )
        if row["status"] == "closed":
            raise EnquiryError(f"{row['ref']} is already closed", "already_closed", ref=row["ref"])
        note = f"\n\n{_attachments_note(row, attachments)}" if attachments else ""
        if row["chat_id"] and row["channel"] == WEB_CHANNEL:
            _queue_web_answer(db, row, answer + note, now)
        elif row["chat_id"]:
            chat_delivery(
                db,
                channel=row["channel"],
                # A notice of an answer given elsewhere stands whatever becomes of it.
                kind="answer_notice" if answered_now else "answer",
                enquiry_id=row["id"],
                recipient=row["chat_id"],
                payload=answer + note,
                now=now,
            )
        if settings is not None and row["email"]:
            message = answer_mail(
                settings,
                row,
                answer,
                now=now,
                attachments=attachments,
                reply_address=enquiry_reply_address(db, settings, str(row["ref"])),
            )
            _queue_mail(db, message, "answer", int(row["id"]), now)
        return _record_answer(db, row, answer, actor=actor, now=now, detail={"from": row["status"]})


def follow_up_enquiry(
    db: sqlite_utils.Database,
    settings: Settings,
    ref: str,
    text: str,
    *,
    via: str,
    now: datetime,
) -> dict[str, Any]:
    """The applicant wrote again about an enquiry: re-open it, forward it to the secretariat
    by e-mail and, when there is an admin chat, as a post there (replying to it answers).

    `via` is "email" or the chat channel. The reminders start over from now.
    """
    from bot.mail.compose import follow_up_mail
    from bot.mail.inbound.address import enquiry_reply_address

    message_text = text.strip()
    if not message_text:
        raise EnquiryError("the follow-up is empty", "empty_follow_up")
    with transaction(db):
        row = require_ref(db, ref)
        if row["erased_at"] is not None:
            raise EnquiryError(
                f"{row['ref']} was erased at the applicant's request", "erased", ref=row["ref"]
            )
        message = follow_up_mail(
            settings,
            row,
            message_text,
            now=now,
            via_email=via == "email",
            reply_address=enquiry_reply_address(db, settings, str(row["ref"])),
            original_message_id=deliveries.first_key(db, int(row["id"]), "enquiry"),
        )
        _queue_mail(db, message, "follow_up", int(row["id"]), now)
        admin_chat = admin_chat_id(db, settings)
        if admin_chat != 0:
            # Like the enquiry's own post: the secretariat sees it, and answers by replying.
            chat_delivery(
                db,
                channel="telegram",
                kind=FOLLOW_UP_POSTED,
                enquiry_id=int(row["id"]),
                recipient=str(admin_chat),
                payload=message_text,
                now=now,
            )
        db.conn.execute(
            "UPDATE enquiries SET status = 'open', forwarded_at = ?, reminder_count = 0, "
            "last_reminder_at = NULL, closed_at = NULL, closed_by = NULL WHERE id = ?",
            (to_iso(now), row["id"]),
        )
        record_audit(
            db,
            "follow_up",
            actor="applicant",
            now=now,
            enquiry_id=row["id"],
            ref=row["ref"],
            detail={"via": via, "from": row["status"]},
        )
        return require_by_id(db, int(row["id"]))


def _queue_web_answer(
    db: sqlite_utils.Database, row: Mapping[str, Any], answer: str, now: datetime
) -> int:
    """The answer to a web applicant: a delivery of the one queue, transport `web`."""
    earlier = db.conn.execute(
        "SELECT COUNT(*) FROM deliveries WHERE enquiry_id = ? AND transport = ? AND kind = ?",
        (row["id"], WEB_CHANNEL, "answer"),
    ).fetchone()[0]
    return deliveries.enqueue(
        db,
        NewDelivery(
            transport=WEB_CHANNEL,
            kind="answer",
            recipient=str(row["chat_id"]),
            payload=answer,
            # The n-th answer to this enquiry: stable across retries, new for a new answer.
            idempotency_key=f"web-answer:{row['id']}:{earlier + 1}",
            enquiry_id=int(row["id"]),
        ),
        now,
    )


def mark_answered(
    db: sqlite_utils.Database, ref: str, *, actor: str, now: datetime
) -> dict[str, Any]:
    """Record that the secretariat answered elsewhere (e.g. by e-mail); nothing is relayed."""
    with transaction(db):
        row = require_ref(db, ref)
        if row["status"] != "open":
            raise EnquiryError(
                f"{row['ref']} is already {row['status']}",
                f"already_{row['status']}",
                ref=row["ref"],
            )
        return _record_answer(
            db, row, None, actor=actor, now=now, detail={"from": "open", "relayed": False}
        )
