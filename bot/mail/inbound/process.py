"""One received e-mail -> its effect on an enquiry, recorded once, in one transaction.

The effects: a secretariat answer is recorded and relayed to the applicant; an auto-reply
is kept and ignored; a bounce marks the bot's mail that bounced as failed and reports it;
anything from a sender not on the allow-list, or matching no enquiry, is kept and shown
in 'clusterbot inbox status', never relayed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.mail.inbound.address import match_reply_address, may_answer, token_secret
from bot.mail.inbound.parse import InboundMail, parse_mail
from bot.storage import to_iso, transaction

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings import Settings

log = logging.getLogger(__name__)

# Outbox kinds about one enquiry that a reply may thread under: the secretariat replies to
# the enquiry, its reminders and follow-ups; the applicant to the answer.
_THREADED = ("enquiry", "reminder", "follow_up", "answer")


@dataclass(frozen=True)
class InboundResult:
    """What became of one e-mail."""

    inbound_id: int | None
    status: str
    ref: str | None = None
    reason: str = ""
    duplicate: bool = False

    @property
    def relayed(self) -> bool:
        """True when an answer was recorded and queued for the applicant."""
        return self.status == "answer" and not self.duplicate


def _rows(db: sqlite_utils.Database, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    return list(db.query(sql, params))


def _enquiry_by_ref(db: sqlite_utils.Database, ref: str) -> dict[str, Any] | None:
    from bot.enquiries import normalize_ref

    rows = _rows(db, "SELECT * FROM enquiries WHERE ref = ?", [normalize_ref(ref)])
    return rows[0] if rows else None


def _enquiry_by_thread(db: sqlite_utils.Database, mail: InboundMail) -> dict[str, Any] | None:
    """The enquiry whose e-mail (or reminder) this mail replies to, by Message-ID.

    The direct parent (In-Reply-To) decides when there is one; References only without it.
    A parent that concerns several enquiries (a grouped reminder) matches none.
    """
    ids = list(mail.in_reply_to) or list(mail.references)
    if not ids:
        return None
    from bot.deliveries.store import enquiries_of_keys
    from bot.enquiries import enquiry_by_id

    found = enquiries_of_keys(db, ids, _THREADED)
    return enquiry_by_id(db, found[0]) if len(found) == 1 else None


def _subject_ref(settings: Settings, subject: str) -> str | None:
    from bot.enquiries import normalize_ref

    prefix = re.escape(settings.enquiries.reference_prefix)
    found = {
        normalize_ref(ref)
        for ref in re.findall(rf"\b({prefix}-\d{{1,9}})\b", subject, re.IGNORECASE | re.ASCII)
    }
    # Several references (a reply to a grouped reminder): which one is answered is unclear.
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class _Match:
    enquiry: dict[str, Any] | None
    by: str | None
    forged: bool = False


def match_enquiry(db: sqlite_utils.Database, settings: Settings, mail: InboundMail) -> _Match:
    """Token in our plus-address, else In-Reply-To/References, else the subject's reference."""
    secret = token_secret(db)
    address = match_reply_address(settings, secret, mail.recipients)
    if address is not None:
        if not address.valid:
            # A reference in our address with a wrong token: someone made the address up.
            return _Match(None, "token", forged=True)
        return _Match(_enquiry_by_ref(db, address.ref), "token")
    threaded = _enquiry_by_thread(db, mail)
    if threaded is not None:
        return _Match(threaded, "thread")
    ref = _subject_ref(settings, mail.subject)
    if ref is not None:
        return _Match(_enquiry_by_ref(db, ref), "subject")
    return _Match(None, None)


def _record(
    db: sqlite_utils.Database,
    mail: InboundMail,
    raw: bytes,
    *,
    source: str,
    now: datetime,
    status: str,
    enquiry: dict[str, Any] | None = None,
    by: str | None = None,
    reason: str = "",
) -> InboundResult:
    cursor = db.conn.execute(
        "INSERT INTO inbound_mail (message_id, received_at, source, sender, subject, status, "
        "enquiry_id, matched_by, reason, attachments, answer, raw) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            mail.message_id,
            to_iso(now),
            source,
            mail.sender,
            mail.subject,
            status,
            enquiry["id"] if enquiry else None,
            by,
            reason,
            mail.attachments,
            mail.answer or None,
            raw,
        ),
    )
    ref = str(enquiry["ref"]) if enquiry else None
    if status not in ("answer", "follow_up", "auto_reply", "bounce"):
        # Kept for the operator; the log names no address (personal data).
        log.warning("inbound mail %s not relayed: %s", cursor.lastrowid, reason or status)
    return InboundResult(cursor.lastrowid, status, ref, reason)


def _bounce(db: sqlite_utils.Database, settings: Settings, mail: InboundMail, now: datetime) -> str:
    """Mark the bot's mails that bounced as failed; the reason recorded with the bounce."""
    from bot.enquiries import mark_bounced

    failed = mark_bounced(db, settings, mail.bounced_ids, now)
    return f"bounce of {failed} sent mail(s)" if failed else "bounce of no mail the bot sent"


def _effect(
    db: sqlite_utils.Database, settings: Settings, mail: InboundMail, now: datetime
) -> tuple[str, dict[str, Any] | None, str | None, str]:
    """Apply what this mail means: (status, enquiry, matched by, reason)."""
    from bot.enquiries import EnquiryError, answer_enquiry, follow_up_enquiry

    if mail.is_bounce:
        return "bounce", None, None, _bounce(db, settings, mail, now)
    if mail.automatic:
        return "auto_reply", None, None, mail.automatic
    found = match_enquiry(db, settings, mail)
    enquiry, by = found.enquiry, found.by
    if found.forged:
        return "refused", None, by, "the reply address has a wrong token"
    if enquiry is None:
        return "unmatched", None, by, ("no enquiry has this reference" if by else "no match")
    from_applicant = bool(mail.sender) and mail.sender == str(enquiry.get("email") or "").lower()
    if not may_answer(settings, mail.sender) and not from_applicant:
        return "refused", enquiry, by, "the sender is not on secretariat.answer_from"
    if not mail.answer:
        return "ignored", enquiry, by, "no text after removing the quoted mail"
    ref = str(enquiry["ref"])
    try:
        # Savepoints inside the caller's transaction: the effect and the record commit together.
        if may_answer(settings, mail.sender):
            answer_enquiry(
                db,
                ref,
                mail.answer,
                actor=f"email:{mail.sender}",
                now=now,
                settings=settings,
                attachments=mail.attachments,
            )
            return "answer", enquiry, by, ""
        # The applicant replied to the bot's answer: a follow-up for the secretariat.
        follow_up_enquiry(db, settings, ref, mail.answer, via="email", now=now)
        return "follow_up", enquiry, by, ""
    except EnquiryError as exc:
        return "ignored", enquiry, by, str(exc)


def process_mail(
    db: sqlite_utils.Database,
    settings: Settings,
    raw: bytes,
    *,
    source: str,
    now: datetime,
) -> InboundResult:
    """Record one raw e-mail and apply its effect; a mail already seen changes nothing."""
    mail = parse_mail(raw)
    with transaction(db):
        seen = _rows(
            db, "SELECT id, status FROM inbound_mail WHERE message_id = ?", [mail.message_id]
        )
        if seen:
            return InboundResult(int(seen[0]["id"]), str(seen[0]["status"]), duplicate=True)
        status, enquiry, by, reason = _effect(db, settings, mail, now)
        return _record(
            db,
            mail,
            raw,
            source=source,
            now=now,
            status=status,
            enquiry=enquiry,
            by=by,
            reason=reason,
        )


def enquiry_inbound(db: sqlite_utils.Database, enquiry_id: int) -> list[dict[str, Any]]:
    """The e-mails received about one enquiry, oldest first, without their raw bytes."""
    return _rows(
        db,
        "SELECT id, message_id, received_at, source, sender, status, matched_by, reason, "
        "attachments, raw IS NOT NULL AS original_kept FROM inbound_mail "
        "WHERE enquiry_id = ? ORDER BY id",
        [enquiry_id],
    )
