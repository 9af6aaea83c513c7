"""The daily digest of open enquiries and recent answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from babel.dates import format_datetime as babel_datetime

from bot.mail.compose.context import (
    _CHANNEL_NAMES,
    _LANGUAGE_NAMES,
    DIGEST_QUESTION_CHARS,
    _format_age,
    actor_name,
    country_name,
    first_words,
)
from bot.mail.compose.message import _base_message, _message_id
from bot.mail.compose.templates import _render_pair

if TYPE_CHECKING:
    from bot.settings import Settings


@dataclass(frozen=True)
class DigestItem:
    """One open enquiry in the digest."""

    ref: str
    organisation: str
    country: str
    channel: str
    created_at: datetime
    age: timedelta
    reminder_count: int
    question: str = ""
    lang: str = ""
    # Waiting longer than the secretariat should let an applicant wait (reminders.first_after).
    overdue: bool = False
    # False while the enquiry's e-mail to the secretariat is still queued (not yet delivered).
    forwarded: bool = True


@dataclass(frozen=True)
class AnsweredItem:
    """One enquiry answered since the previous digest."""

    ref: str
    question: str
    answered_by: str
    waited: timedelta


@dataclass(frozen=True)
class Digest:
    """What the daily digest reports."""

    generated_at: datetime
    since: datetime | None
    open: Sequence[DigestItem] = field(default_factory=tuple)
    answered_count: int = 0
    closed_count: int = 0
    median_answer: timedelta | None = None
    answered: Sequence[AnsweredItem] = field(default_factory=tuple)
    # Enquiry mails held back by enquiries.max_mails_per_hour, and that cap.
    waiting_mails: int = 0
    mails_per_hour: int = 0

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to report (no mail is sent then)."""
        return not self.open and self.answered_count == 0 and self.closed_count == 0


def digest_mail(settings: Settings, digest: Digest) -> EmailMessage:
    """The daily digest of open enquiries and recent answers."""
    lang = settings.secretariat.language
    zone = ZoneInfo(settings.digest.timezone)
    # The overdue first, then the oldest first: what needs an answer most heads the list.
    ordered = sorted(digest.open, key=lambda item: (not item.overdue, item.created_at, item.ref))
    items = [
        {
            "ref": item.ref,
            "question": first_words(item.question, DIGEST_QUESTION_CHARS),
            "organisation": item.organisation,
            "country": country_name(item.country, lang),
            "language": _LANGUAGE_NAMES[lang].get(item.lang, item.lang),
            "channel": _CHANNEL_NAMES[lang].get(item.channel, item.channel),
            "created_local": babel_datetime(
                item.created_at, "d MMM y, HH:mm", tzinfo=zone, locale=lang
            ),
            "age": _format_age(item.age, lang),
            "reminder_count": item.reminder_count,
            "overdue": item.overdue,
            "forwarded": item.forwarded,
        }
        for item in ordered
    ]
    answered = [
        {
            "ref": item.ref,
            "question": first_words(item.question, DIGEST_QUESTION_CHARS),
            "answered_by": actor_name(item.answered_by, lang),
            "waited": _format_age(item.waited, lang),
        }
        for item in digest.answered
    ]
    context = {
        "date_local": babel_datetime(digest.generated_at, "d MMMM y", tzinfo=zone, locale=lang),
        "since_local": (
            babel_datetime(digest.since, "d MMMM y, HH:mm", tzinfo=zone, locale=lang)
            if digest.since
            else ""
        ),
        "open": items,
        "open_count": len(items),
        "overdue": [item for item in items if item["overdue"]],
        "waiting": [item for item in items if not item["overdue"]],
        "queued_count": sum(1 for item in items if not item["forwarded"]),
        "answered": answered,
        "answered_count": digest.answered_count,
        "closed_count": digest.closed_count,
        "median_answer": _format_age(digest.median_answer, lang) if digest.median_answer else "",
        "timezone": settings.digest.timezone,
        "waiting_mails": digest.waiting_mails,
        "mails_per_hour": digest.mails_per_hour,
    }
    subject, text, html = _render_pair(lang, "digest", context)
    message = _base_message(settings, subject, text, html, digest.generated_at)
    message["Message-ID"] = _message_id(settings, "digest")
    message["X-Clusterbot-Kind"] = "digest"
    return message
