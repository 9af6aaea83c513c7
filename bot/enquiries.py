"""Enquiries: the domain rules for submitting, answering, closing, erasing and exporting them."""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import IO, Any

import sqlite_utils

from bot.deliveries import store as deliveries
from bot.deliveries.model import Dead, Delivery, NewDelivery, Outcome, Retry, Sent
from bot.dialogue.form import FieldError, validate_draft
from bot.settings import Settings
from bot.storage import (
    Database,
    dumps,
    get_meta,
    next_enquiry_id,
    record_audit,
    set_meta,
    to_iso,
    transaction,
    utc_now,
)

STATUSES = ("open", "answered", "closed")
# The web chat's channel name: its answers travel through the deliveries queue.
WEB_CHANNEL = "web"
# Columns that identify or describe a person; erasure nulls them.
PERSONAL_COLUMNS = (
    "user_id",
    "chat_id",
    "username",
    "name",
    "email",
    "organisation",
    "question",
    "answer",
    "close_note",
)
EXPORT_COLUMNS = (
    "id",
    "ref",
    "status",
    "channel",
    "lang",
    "name",
    "email",
    "organisation",
    "country",
    "question",
    "faq_history",
    "created_at",
    "forwarded_at",
    "answered_at",
    "answered_by",
    "answer",
    "closed_at",
    "closed_by",
    "close_note",
    "reminder_count",
    "last_reminder_at",
    "erased_at",
)
# Cells a spreadsheet would run as a formula ("=HYPERLINK(...)") get a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ERASED_NOTE = "erased at the applicant's request"
# The notification that edits an enquiry's admin-chat post to its erased form.
POST_ERASED = "post_erased"
_REF = re.compile(r"^([A-Z][A-Z0-9]{0,9})-0*(\d{1,9})$")


class EnquiryError(Exception):
    """An error the user (applicant, admin or operator) caused; the message says what.

    `code` and `params` let a channel say the same in the reader's language (the admin
    chat's texts are keyed `error_<code>`); the message is the English wording.
    """

    def __init__(self, message: str, code: str = "", **params: str) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


class EnquiryLimitError(EnquiryError):
    """The applicant reached the daily number of enquiries."""


def format_ref(prefix: str, enquiry_id: int) -> str:
    """The reference shown to everyone: PREFIX-NNNN (at least four digits)."""
    return f"{prefix}-{enquiry_id:04d}"


def _insert(db: sqlite_utils.Database, table: str, row: Mapping[str, Any]) -> int:
    # Plain SQL: sqlite-utils' insert() introspects the table on every call.
    columns = ", ".join(row)
    marks = ", ".join(f":{name}" for name in row)
    cursor = db.conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", dict(row))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _rows(db: sqlite_utils.Database, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = db.conn.execute(sql, tuple(params))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _chat_delivery(
    db: sqlite_utils.Database,
    *,
    channel: str,
    kind: str,
    enquiry_id: int | None,
    recipient: str,
    payload: str,
    now: datetime,
) -> int:
    # What to say and to whom; the channel's transport says it in its own words.
    return deliveries.enqueue(
        db,
        NewDelivery(
            transport=channel,
            kind=kind,
            recipient=recipient,
            payload=payload,
            idempotency_key=f"{channel}:{kind}:{enquiry_id or '-'}:{uuid.uuid4().hex}",
            enquiry_id=enquiry_id,
        ),
        now,
    )


ADMIN_CHAT_KEY = "telegram.admin_chat_id"


def admin_chat_id(db: sqlite_utils.Database, settings: Settings) -> int:
    """The secretariat's Telegram chat: the setting, or the supergroup it became."""
    configured = settings.telegram.admin_chat_id
    if configured == 0:
        return 0
    moved = get_meta(db, ADMIN_CHAT_KEY)
    if moved:
        old, _, new = moved.partition(">")
        if old == str(configured) and new.lstrip("-").isdigit():
            return int(new)
    return configured


def follow_admin_chat(db: sqlite_utils.Database, settings: Settings, old: int, new: int) -> None:
    """The admin group became a supergroup (inside the caller's transaction): remember
    the new id, send what waits there, and tell the secretariat to update the setting."""
    configured = settings.telegram.admin_chat_id
    set_meta(db, ADMIN_CHAT_KEY, f"{configured}>{new}")
    deliveries.retarget(db, "telegram", str(old), str(new))
    _chat_delivery(
        db,
        channel="telegram",
        kind="admin_chat_moved",
        enquiry_id=None,
        recipient=str(new),
        payload=dumps({"old": old, "new": new}),
        now=utc_now(),
    )
    record_audit(
        db, "admin_chat_moved", actor="system", now=utc_now(), detail={"old": old, "new": new}
    )


def admin_chat_problems(db: sqlite_utils.Database) -> list[str]:
    """`clusterbot check`: the admin group moved and the setting still names the old one."""
    moved = get_meta(db, ADMIN_CHAT_KEY)
    if not moved:
        return []
    old, _, new = moved.partition(">")
    return [
        f"telegram.admin_chat_id: the admin group {old} became the supergroup {new}; the bot "
        f"follows it, but set admin_chat_id = {new} in the settings file"
    ]


def count_created_since(
    db: sqlite_utils.Database, channel: str, user_id: str, since: datetime
) -> int:
    """How many enquiries this user created at or after `since`."""
    row = db.conn.execute(
        "SELECT count(*) FROM enquiries WHERE channel = ? AND user_id = ? AND created_at >= ?",
        (channel, user_id, to_iso(since)),
    ).fetchone()
    return int(row[0])


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
        enquiry_id = _insert(
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
        row = _enquiry_by_id(db, enquiry_id)
        message = enquiry_mail(settings, row, enquiry_reply_address(db, settings, ref))
        deliveries.enqueue(db, mail_delivery(message, "enquiry", enquiry_id), now)
        if settings.enquiries.acknowledge:
            receipt = acknowledgement_mail(settings, row)
            deliveries.enqueue(db, mail_delivery(receipt, "acknowledgement", enquiry_id), now)
        admin_chat = admin_chat_id(db, settings)
        if admin_chat != 0:
            _chat_delivery(
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


def _enquiry_by_id(db: sqlite_utils.Database, enquiry_id: int) -> dict[str, Any]:
    rows = _rows(db, "SELECT * FROM enquiries WHERE id = ?", (enquiry_id,))
    if not rows:
        raise EnquiryError(f"no enquiry with id {enquiry_id}")
    return rows[0]


def enquiry_by_id(db: sqlite_utils.Database, enquiry_id: int) -> dict[str, Any] | None:
    """One enquiry by id, or None."""
    rows = _rows(db, "SELECT * FROM enquiries WHERE id = ?", (enquiry_id,))
    return rows[0] if rows else None


def mark_bounced(
    db: sqlite_utils.Database, settings: Settings, message_ids: Sequence[str], at: datetime
) -> int:
    """The sent mails a bounce reports on become dead and are reported; returns how many.

    Runs inside the caller's transaction (the inbound pipeline records the bounce with it).
    """
    error = "bounced: the receiving mail server returned it as undeliverable"
    rules = DeliveryRules(settings)
    bounced = deliveries.mark_bounced(db, message_ids, error)
    for delivery in bounced:
        # The recipient is unreachable: no notice mail to the same place.
        rules.report_mail_failed(db, delivery, error, at, partial=False, notice=False)
    return len(bounced)


def normalize_ref(ref: str) -> str:
    """A reference as typed ('eccp-42', ' ECCP-0042 ') in its stored form when recognisable."""
    text = ref.strip().upper()
    match = _REF.match(text)
    if match:
        return format_ref(match.group(1), int(match.group(2)))
    return text


def get_enquiry(db: sqlite_utils.Database, ref: str) -> dict[str, Any] | None:
    """One enquiry by reference (case-insensitive, padding optional), or None."""
    rows = _rows(db, "SELECT * FROM enquiries WHERE ref = ?", (normalize_ref(ref),))
    return rows[0] if rows else None


def _require(db: sqlite_utils.Database, ref: str) -> dict[str, Any]:
    row = get_enquiry(db, ref)
    if row is None:
        raise EnquiryError(
            f"no enquiry with reference {ref.strip()!r}", "unknown_ref", ref=ref.strip()
        )
    return row


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
    return _enquiry_by_id(db, row["id"])


def _attachments_note(row: Mapping[str, Any], count: int) -> str:
    from bot.dialogue.texts import default_texts

    lang = str(row.get("lang") or "en")
    return default_texts().get(lang, "answer_attachments", count=count, ref=str(row["ref"]))


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
        row = _require(db, ref)
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
            _chat_delivery(
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
    """The applicant wrote again about an enquiry: re-open it, forward it to the secretariat.

    `via` is "email" or the chat channel. The reminders start over from now.
    """
    from bot.mail.compose import follow_up_mail
    from bot.mail.inbound.address import enquiry_reply_address

    message_text = text.strip()
    if not message_text:
        raise EnquiryError("the follow-up is empty", "empty_follow_up")
    with transaction(db):
        row = _require(db, ref)
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
        return _enquiry_by_id(db, int(row["id"]))


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
        row = _require(db, ref)
        if row["status"] != "open":
            raise EnquiryError(
                f"{row['ref']} is already {row['status']}",
                f"already_{row['status']}",
                ref=row["ref"],
            )
        return _record_answer(
            db, row, None, actor=actor, now=now, detail={"from": "open", "relayed": False}
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
        row = _require(db, ref)
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
        return _enquiry_by_id(db, row["id"])


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
            # Unsent mail carries the data in its raw bytes; sent mail keeps only its metadata.
            pending = deliveries.cancel_for_enquiry(db, enquiry_id, ERASED_NOTE)
            # The admin-chat post shows the applicant's data: the channel edits it to its
            # erased form (no recipient: the admin chat in force when it is delivered).
            if found[1] is not None:
                _chat_delivery(
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
            from bot.jobs import queue_grouped_reminder

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


def _grouped_reminder_moot(db: sqlite_utils.Database, delivery: Delivery) -> str | None:
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


def list_enquiries(db: sqlite_utils.Database, status: str = "all") -> list[dict[str, Any]]:
    """Enquiries with this status ('all' for every one), oldest first."""
    if status == "all":
        return _rows(db, "SELECT * FROM enquiries ORDER BY created_at, id")
    if status not in STATUSES:
        raise EnquiryError(f"unknown status {status!r}: use open, answered, closed or all")
    return _rows(db, "SELECT * FROM enquiries WHERE status = ? ORDER BY created_at, id", (status,))


def user_enquiries(db: sqlite_utils.Database, channel: str, user_id: str) -> list[dict[str, Any]]:
    """This user's enquiries, oldest first."""
    return _rows(
        db,
        "SELECT * FROM enquiries WHERE channel = ? AND user_id = ? ORDER BY created_at, id",
        (channel, user_id),
    )


def enquiry_history(db: sqlite_utils.Database, enquiry_id: int) -> list[dict[str, Any]]:
    """The audit events of one enquiry, oldest first."""
    return _rows(
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


def public_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """An enquiry for export and --json: the export columns, faq_history as a list."""
    record = {column: row.get(column) for column in EXPORT_COLUMNS}
    try:
        history = json.loads(row.get("faq_history") or "[]")
    except (TypeError, ValueError):
        history = []
    record["faq_history"] = history if isinstance(history, list) else []
    return record


def export_jsonl(rows: Iterable[Mapping[str, Any]], stream: IO[str]) -> int:
    """Write one JSON object per enquiry; returns how many were written."""
    count = 0
    for row in rows:
        stream.write(json.dumps(public_record(row), ensure_ascii=False) + "\n")
        count += 1
    return count


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def export_csv(rows: Iterable[Mapping[str, Any]], stream: IO[str]) -> int:
    """Write a CSV with a header row; faq_history is one cell, questions joined by ' | '."""
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for row in rows:
        record = public_record(row)
        record["faq_history"] = " | ".join(str(item) for item in record["faq_history"])
        writer.writerow([_csv_cell(record[column]) for column in EXPORT_COLUMNS])
        count += 1
    return count


# ---------------------------------------------------------------- delivery outcomes


def _text(payload: bytes | str | None) -> str:
    return payload.decode() if isinstance(payload, bytes) else str(payload or "")


class DeliveryRules:
    """What deliveries mean for enquiries: the queue's one outcome hook (OutcomeHook).

    The worker calls it inside the transaction that records each outcome, so an enquiry's
    state and its deliveries never disagree.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def withdrawn(self, db: sqlite_utils.Database, delivery: Delivery) -> str | None:
        """A delivery of an erased enquiry, or a reminder of one answered since, is moot."""
        if delivery.kind == "reminders":
            return _grouped_reminder_moot(db, delivery)
        if delivery.enquiry_id is None or delivery.kind == POST_ERASED:
            # (The edit that hides an erased enquiry's post is what erasure asks for.)
            return None
        found = db.conn.execute(
            "SELECT status, erased_at FROM enquiries WHERE id = ?", (delivery.enquiry_id,)
        ).fetchone()
        if found is None or found[1] is not None:
            return "its enquiry was erased"
        if delivery.kind == "reminder" and found[0] != "open":
            return "the enquiry is no longer open"
        return None

    def settled(
        self, db: sqlite_utils.Database, delivery: Delivery, outcome: Outcome, at: datetime
    ) -> None:
        """Record what an outcome changes for the enquiry, and report failures."""
        if isinstance(outcome, Retry):
            return
        if delivery.transport != "smtp":
            self._chat_settled(db, delivery, outcome, at)
            return
        if isinstance(outcome, Sent):
            if delivery.kind == "enquiry" and delivery.enquiry_id is not None:
                self._forwarded(db, delivery, at)
            if outcome.refused:
                self.report_mail_failed(
                    db, delivery, outcome.refused, at, partial=True, notice=False
                )
            return
        if delivery.kind == "answer" and delivery.enquiry_id is not None:
            answered = enquiry_by_id(db, delivery.enquiry_id)
            if answered is not None:
                self._answer_undelivered(db, answered, delivery, outcome, at)
        # A refused recipient would refuse the notice too: only message-level refusals
        # (size, content) get a notice mail; the admin chat hears of every failure.
        self.report_mail_failed(
            db, delivery, outcome.reason, at, partial=False, notice=not outcome.recipient_refused
        )

    def _chat_settled(
        self, db: sqlite_utils.Database, delivery: Delivery, outcome: Outcome, at: datetime
    ) -> None:
        if delivery.enquiry_id is None:
            return
        row = enquiry_by_id(db, delivery.enquiry_id)
        if row is None:
            return
        if isinstance(outcome, Sent):
            if delivery.kind == "enquiry_posted" and outcome.ref and outcome.ref.isdigit():
                db.conn.execute(
                    "UPDATE enquiries SET admin_message_id = ? WHERE id = ?",
                    (int(outcome.ref), row["id"]),
                )
            return
        if isinstance(outcome, Dead) and delivery.kind == "answer":
            self._answer_undelivered(db, row, delivery, outcome, at)

    def _answer_undelivered(
        self,
        db: sqlite_utils.Database,
        row: dict[str, Any],
        delivery: Delivery,
        outcome: Dead,
        at: datetime,
    ) -> None:
        """One way of the answer failed for good (the applicant blocked the bot, the chat is
        gone, the address refused it). While another way still carries it, nothing to do;
        when none is left the enquiry is not answered after all, and the secretariat hears
        what to do."""
        if deliveries.alive_of_kind(db, row["id"], "answer", besides=delivery.id):
            return
        if row["status"] == "answered":
            db.conn.execute(
                "UPDATE enquiries SET status = 'open', answered_at = NULL WHERE id = ?",
                (row["id"],),
            )
        record_audit(
            db,
            "answer_failed",
            actor="system",
            now=at,
            enquiry_id=row["id"],
            ref=row["ref"],
            detail={"delivery": delivery.id, "transport": delivery.transport},
        )
        admin_chat = admin_chat_id(db, self.settings)
        if admin_chat != 0:
            _chat_delivery(
                db,
                channel="telegram",
                kind="answer_undelivered",
                enquiry_id=row["id"],
                recipient=str(admin_chat),
                payload=dumps({"reason": outcome.reason.split(":")[0]}),
                now=at,
            )

    def _forwarded(self, db: sqlite_utils.Database, delivery: Delivery, at: datetime) -> None:
        moment = to_iso(at)
        found = db.conn.execute(
            "UPDATE enquiries SET forwarded_at = ? "
            "WHERE id = ? AND forwarded_at IS NULL AND erased_at IS NULL RETURNING ref",
            (moment, delivery.enquiry_id),
        ).fetchall()
        if found:
            record_audit(
                db,
                "forwarded",
                actor="system",
                now=at,
                enquiry_id=delivery.enquiry_id,
                ref=found[0][0],
                detail={"delivery": delivery.id},
            )

    def report_mail_failed(
        self,
        db: sqlite_utils.Database,
        delivery: Delivery,
        error: str,
        at: datetime,
        *,
        partial: bool,
        notice: bool,
    ) -> None:
        from bot.deliveries.smtp import status_code
        from bot.mail.compose import ComposeError, failure_mail, failure_text, mail_delivery

        ref = deliveries.enquiry_ref(db, delivery.enquiry_id)
        # The server's reply may quote addresses: the audit keeps only its status code.
        detail: dict[str, Any] = {
            "delivery": delivery.id,
            "kind": delivery.kind,
            "code": status_code(error),
        }
        if partial:
            detail["partial"] = True
        record_audit(
            db,
            "mail_failed",
            actor="system",
            now=at,
            enquiry_id=delivery.enquiry_id,
            ref=ref,
            detail=detail,
        )
        facts = {
            "id": delivery.id,
            "kind": delivery.kind,
            "message_id": delivery.idempotency_key,
            "created_at": delivery.created_at,
            "attempts": delivery.attempts + 1,
        }
        settings = self.settings
        admin_chat = admin_chat_id(db, settings)
        if admin_chat != 0:
            _chat_delivery(
                db,
                channel="telegram",
                kind="mail_failed",
                enquiry_id=delivery.enquiry_id,
                recipient=str(admin_chat),
                payload=failure_text(settings, facts, error, ref),
                now=at,
            )
        if notice and delivery.kind != "failure":
            try:
                message = failure_mail(settings, facts, error, ref, at)
            except ComposeError:
                return
            deliveries.enqueue(db, mail_delivery(message, "failure", delivery.enquiry_id), at)
