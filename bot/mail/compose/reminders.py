"""Reminders of unanswered enquiries: one per enquiry, or one for a whole round."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from bot.mail.compose.context import (
    DIGEST_QUESTION_CHARS,
    HEADER_KEYS,
    _enquiry_context,
    _format_age,
    _local_time,
    _moment,
    first_words,
)
from bot.mail.compose.headers import _header_text
from bot.mail.compose.message import _base_message, _message_id, _reply_to, _thread_under
from bot.mail.compose.templates import _render_pair

if TYPE_CHECKING:
    from bot.settings import Settings


# A grouped reminder's subject lists the references up to this length ("… and 12 more").
GROUPED_SUBJECT_REFS_CHARS = 120
# At most this many original Message-IDs in a grouped reminder's References header.
MAX_REFERENCES = 20


def reminder_mail(
    settings: Settings,
    enquiry: Mapping[str, Any],
    original_message_id: str | None,
    count: int,
    now: datetime | None = None,
    reply_address: str | None = None,
) -> EmailMessage:
    """Reminder `count` (1-based) for an unanswered enquiry, threaded under the original mail."""
    lang = settings.secretariat.language
    moment = now or datetime.now(UTC)
    context = _enquiry_context(settings, enquiry)
    for key in HEADER_KEYS:
        context[key] = _header_text(context[key], key)
    forwarded = enquiry.get("forwarded_at") or enquiry["created_at"]
    context.update(
        count=count,
        max_count=settings.reminders.max_count,
        age=_format_age(moment - _moment(enquiry["created_at"]), lang),
        forwarded_local=_local_time(_moment(forwarded), settings, lang),
    )
    subject, text, html = _render_pair(lang, "reminder", context)
    message = _base_message(settings, subject, text, html, moment)
    if context["email"] or reply_address:
        message["Reply-To"] = _reply_to(context, reply_address)
    message["Message-ID"] = _message_id(settings, f"{context['ref'].lower()}-r{count}")
    _thread_under(message, original_message_id)
    message["X-Clusterbot-Ref"] = context["ref"]
    message["X-Clusterbot-Kind"] = "reminder"
    return message


def grouped_reminder_mail(
    settings: Settings,
    reminders: Sequence[tuple[Mapping[str, Any], int]],
    now: datetime,
    original_message_ids: Sequence[str] = (),
) -> EmailMessage:
    """One reminder for every enquiry due in one round: (enquiry row, its reminder number).

    The subject, the X-Clusterbot-Refs header and the body name each reference, so each
    enquiry's reminders can still be counted in the mailbox.
    """
    if not reminders:
        raise ValueError("a grouped reminder needs at least one enquiry")
    lang = settings.secretariat.language
    items = []
    for enquiry, count in sorted(reminders, key=lambda pair: str(pair[0]["created_at"])):
        context = _enquiry_context(settings, enquiry)
        context["ref"] = _header_text(context["ref"], "ref")
        forwarded = enquiry.get("forwarded_at") or enquiry["created_at"]
        context.update(
            count=count,
            question_start=first_words(enquiry.get("question"), DIGEST_QUESTION_CHARS),
            age=_format_age(now - _moment(enquiry["created_at"]), lang),
            forwarded_local=_local_time(_moment(forwarded), settings, lang),
        )
        items.append(context)
    refs = [item["ref"] for item in items]
    shown, hidden = _refs_within(refs, GROUPED_SUBJECT_REFS_CHARS)
    context = {
        "items": items,
        "refs": refs,
        "refs_shown": ", ".join(shown),
        "refs_hidden": hidden,
        "prefix": settings.enquiries.reference_prefix,
        "max_count": settings.reminders.max_count,
        "admin_chat": settings.telegram.admin_chat_id != 0,
    }
    subject, text, html = _render_pair(lang, "reminders", context)
    message = _base_message(settings, subject, text, html, now)
    message["Message-ID"] = _message_id(settings, "reminders")
    originals = [_header_text(value, "original Message-ID") for value in original_message_ids]
    if originals:
        message["References"] = " ".join(originals[:MAX_REFERENCES])
    message["X-Clusterbot-Refs"] = ", ".join(refs)
    message["X-Clusterbot-Kind"] = "reminders"
    return message


def _refs_within(refs: Sequence[str], limit: int) -> tuple[list[str], int]:
    """The references that fit in `limit` characters (joined by ', '), and how many do not."""
    shown: list[str] = []
    length = 0
    for ref in refs:
        length += len(ref) + (2 if shown else 0)
        if length > limit:
            break
        shown.append(ref)
    return shown, len(refs) - len(shown)
