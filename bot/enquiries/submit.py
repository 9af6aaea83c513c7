"""Submitting an enquiry: the form checked, the rows, mails and posts in one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from bot.deliveries import store as deliveries
from bot.enquiries.admin_chat import admin_chat_id
from bot.enquiries.errors import EnquiryError, EnquiryLimitError
from bot.enquiries.fields import FieldError, validate_draft
from bot.enquiries.queries import count_created_since, require_by_id
from bot.enquiries.records import chat_delivery, format_ref, insert_row
from bot.settings import Settings
from bot.storage import (
    dumps,
    next_enquiry_id,
    record_audit,
    to_iso,
    transaction,
)


def submit_enquiry(
    db: sqlite_utils.Database,
    settings: Settings,
    draft: Mapping[str, Any],
    *,
    channel: str,
    user_id: str,
    chat_id: str | None,
    username: str | None,
    lang: str,
    faq_history: Sequence[Any],
    now: datetime,
) -> dict[str, Any]:
    """Store a confirmed enquiry with its secretariat e-mail, admin post and audit, atomically."""
    # Imported here: the mail package is only needed when an enquiry is actually submitted.
    from bot.mail.compose import acknowledgement_mail, enquiry_mail, mail_delivery
    from bot.mail.inbound.address import enquiry_reply_address

    try:
        fields = validate_draft(draft)
    except FieldError as exc:
        raise EnquiryError(f"the enquiry is incomplete or invalid ({exc.code})") from None
    with transaction(db):
        # Counted inside the transaction, so two quick confirmations cannot both slip past it.
        done = count_created_since(db, channel, user_id, now - timedelta(days=1))
        if done >= settings.enquiries.max_per_day:
            raise EnquiryLimitError(
                f"at most {settings.enquiries.max_per_day} enquiries per day per user"
            )
        enquiry_id = insert_row(
            db,
            "enquiries",
            {
                "id": next_enquiry_id(db),
                "channel": channel,
                "user_id": user_id,
                "chat_id": chat_id,
                "username": username,
                "lang": lang,
                **fields,
                "faq_history": dumps(list(faq_history)),
                "status": "open",
                "created_at": to_iso(now),
            },
        )
        ref = format_ref(settings.enquiries.reference_prefix, enquiry_id)
        db.conn.execute("UPDATE enquiries SET ref = ? WHERE id = ?", (ref, enquiry_id))
        row = require_by_id(db, enquiry_id)
        message = enquiry_mail(settings, row, enquiry_reply_address(db, settings, ref))
        deliveries.enqueue(db, mail_delivery(message, "enquiry", enquiry_id), now)
        if settings.enquiries.acknowledge:
            receipt = acknowledgement_mail(settings, row)
            deliveries.enqueue(db, mail_delivery(receipt, "acknowledgement", enquiry_id), now)
        admin_chat = admin_chat_id(db, settings)
        if admin_chat != 0:
            chat_delivery(
                db,
                channel="telegram",
                kind="enquiry_posted",
                enquiry_id=enquiry_id,
                recipient=str(admin_chat),
                payload="",
                now=now,
            )
        record_audit(
            db,
            "created",
            actor="applicant",
            now=now,
            enquiry_id=enquiry_id,
            ref=ref,
            detail={"channel": channel, "lang": lang},
        )
    return row
