"""Template checks for `clusterbot check`, the warm-up at start, and the sample enquiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import jinja2

from bot.mail.compose.acknowledgement import acknowledgement_mail
from bot.mail.compose.answer import answer_mail, follow_up_mail
from bot.mail.compose.context import LANGUAGES, _moment
from bot.mail.compose.delivery import mail_delivery
from bot.mail.compose.digest import Digest, DigestItem, digest_mail
from bot.mail.compose.enquiry import enquiry_mail
from bot.mail.compose.failure import failure_mail, failure_text
from bot.mail.compose.headers import ComposeError
from bot.mail.compose.reminders import grouped_reminder_mail, reminder_mail
from bot.storage import dumps

if TYPE_CHECKING:
    from bot.settings import Settings


def warm_up(settings: Settings) -> list[str]:
    """Compile the mail templates and load the locale data now, at start, so that the first
    confirmed enquiry does not pay for it inside its transaction; returns the problems met
    (`clusterbot check` reports them in detail)."""
    now = datetime.now(UTC)
    try:
        message = enquiry_mail(settings, sample_enquiry())
        mail_delivery(message, "enquiry", None)
        reminder_mail(settings, sample_enquiry(), str(message["Message-ID"]), 1, now)
        grouped_reminder_mail(settings, [(sample_enquiry(), 1)], now)
        acknowledgement_mail(settings, sample_enquiry())
    except (jinja2.TemplateError, ValueError, KeyError) as exc:
        return [f"mail templates: {exc}"]
    return []


def sample_enquiry() -> dict[str, Any]:
    """A complete enquiry row with tricky characters, used by check_templates and tests."""
    return {
        "id": 1,
        "ref": "ECCP-0001",
        "channel": "telegram",
        "user_id": "1001",
        "chat_id": "1001",
        "username": "maria_rossi",
        "lang": "it",
        "name": "Maria Rossi & <Co>",
        "email": "maria.rossi@example.org",
        "organisation": "Cluster Lombardo <Meccatronica> & Partners",
        "country": "Italia",
        "question": "Possiamo partecipare?\n<script>alert(1)</script> & altro",
        "faq_history": dumps(
            [
                {
                    "q": "Qual è la scadenza?",
                    "a": "Il bando si è chiuso il 2 febbraio 2021 alle 17:00 (ora di Bruxelles).",
                    "faq_id": "deadline",
                },
                {"q": "14", "a": None, "faq_id": None},
                {"q": "maria.rossi@example.org", "a": None, "faq_id": None},
                {"q": "Possiamo partecipare con due regioni?", "a": None, "faq_id": None},
            ]
        ),
        "status": "open",
        "created_at": "2026-01-15T08:30:00.000000+00:00",
        "forwarded_at": "2026-01-15T08:30:05.000000+00:00",
        "reminder_count": 0,
        "last_reminder_at": None,
    }


def check_templates() -> list[str]:
    """Render every mail template in every language with sample data; return the problems."""
    from bot.settings import Settings

    problems: list[str] = []
    now = datetime(2026, 1, 20, 8, 0, tzinfo=UTC)
    enquiry = sample_enquiry()
    created = _moment(enquiry["created_at"])
    digest = Digest(
        generated_at=now,
        since=now - timedelta(days=1),
        open=(
            DigestItem("ECCP-0001", "Org <A> & B", "Italia", "telegram", created, now - created, 1),
        ),
        answered_count=2,
        closed_count=1,
        median_answer=timedelta(hours=30),
    )
    outbox = {
        "id": 7,
        "kind": "enquiry",
        "message_id": "<x@example.org>",
        "created_at": enquiry["created_at"],
        "attempts": 2,
    }
    for lang in LANGUAGES:
        settings = Settings.model_validate({"secretariat": {"language": lang}})
        builders: dict[str, Any] = {
            "enquiry": lambda s=settings: enquiry_mail(s, enquiry),
            "enquiry (inbox)": lambda s=settings: enquiry_mail(
                s, enquiry, "bot+ECCP-0001.abcdefghijklmnop@example.org"
            ),
            "answer": lambda s=settings: answer_mail(
                s,
                {**enquiry, "lang": s.secretariat.language},
                "Sì.\n<b>ok</b>",
                now=now,
                attachments=2,
                reply_address="bot+ECCP-0001.abcdefghijklmnop@example.org",
            ),
            "follow_up": lambda s=settings: follow_up_mail(
                s,
                {**enquiry, "answer": "No <b>"},
                "E allora?",
                now=now,
                via_email=True,
                reply_address="bot+ECCP-0001.abcdefghijklmnop@example.org",
            ),
            "reminder": lambda s=settings: reminder_mail(s, enquiry, "<x@example.org>", 1, now),
            "reminders": lambda s=settings: grouped_reminder_mail(
                s, [(enquiry, 1), ({**enquiry, "ref": "ECCP-0002"}, 2)], now, ["<x@example.org>"]
            ),
            "acknowledgement": lambda s=settings, lang=lang: acknowledgement_mail(
                s, {**enquiry, "lang": lang}
            ),
            "digest": lambda s=settings: digest_mail(s, digest),
            "failure": lambda s=settings: failure_mail(s, outbox, "550 unknown", "ECCP-1", now),
            "failure notice": lambda s=settings: failure_text(s, outbox, "550 no", "ECCP-1"),
        }
        for name, build in builders.items():
            try:
                result = build()
            except jinja2.TemplateNotFound as exc:
                problems.append(f"templates/mail/{exc.name}: template missing ({name}, {lang})")
                continue
            except jinja2.TemplateError as exc:
                where = getattr(exc, "filename", None) or f"templates/mail/{lang}/{name}"
                line = getattr(exc, "lineno", None)
                problems.append(f"{where}{f':{line}' if line else ''}: {exc}")
                continue
            except (ComposeError, ValueError, KeyError) as exc:
                problems.append(f"templates/mail/{lang}/{name}: cannot build the mail ({exc})")
                continue
            if isinstance(result, EmailMessage):
                html_part = result.get_body(("html",))
                html = html_part.get_content() if html_part is not None else ""
                if "<script>" in html:
                    problems.append(f"templates/mail/{lang}/{name}.html.j2: HTML is not escaped")
    return problems
