"""Build the secretariat's e-mails from templates: pure functions, no I/O besides templates."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from functools import cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_datetime as babel_datetime

from bot.storage import dumps, from_iso, to_iso

if TYPE_CHECKING:
    from bot.settings import Settings

LANGUAGES = ("it", "en")
KINDS = ("enquiry", "reminder", "digest", "failure")
# Header values from users are kept short: a subject line stays readable in every client.
MAX_HEADER_FIELD = 200

_LANGUAGE_NAMES = {
    "it": {"it": "italiano", "en": "inglese"},
    "en": {"it": "Italian", "en": "English"},
}
_CHANNEL_NAMES = {
    "it": {"telegram": "Telegram", "console": "terminale (clusterbot chat)"},
    "en": {"telegram": "Telegram", "console": "terminal (clusterbot chat)"},
}
_TELEGRAM_USERNAME = re.compile(r"^[A-Za-z0-9_]{3,64}$")
_IDSTRING = re.compile(r"^[A-Za-z0-9-]{1,40}$")


class ComposeError(ValueError):
    """A value cannot go into a mail header (CR/LF, control characters, a bad address)."""


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


@dataclass(frozen=True)
class Digest:
    """What the daily digest reports."""

    generated_at: datetime
    since: datetime | None
    open: Sequence[DigestItem] = field(default_factory=tuple)
    answered_count: int = 0
    closed_count: int = 0
    median_answer: timedelta | None = None

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to report (no mail is sent then)."""
        return not self.open and self.answered_count == 0 and self.closed_count == 0


# ---------------------------------------------------------------- templates


@cache
def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    """(text, html) environments; built lazily so importing this module touches no files."""
    from bot.resources import templates_dir

    loader = jinja2.FileSystemLoader(str(templates_dir() / "mail"))
    text = jinja2.Environment(
        loader=loader,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Explicitly on: select_autoescape() would not match the `.html.j2` suffix.
    html = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return text, html


def _render_pair(lang: str, name: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
    """Render (subject, text, html) of template `name` in `lang`."""
    text_env, html_env = _environments()
    subject = text_env.get_template(f"{lang}/{name}.subject.j2").render(context)
    subject = " ".join(subject.split())
    text = text_env.get_template(f"{lang}/{name}.txt.j2").render(context)
    html = html_env.get_template(f"{lang}/{name}.html.j2").render(context)
    return subject, text, html


def _format_age(value: timedelta | None, lang: str = "en") -> str:
    """A short human duration: '3 d 4 h', '5 h 10 min', '12 min'."""
    if value is None:
        return "—"
    minutes = max(0, int(value.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    day = "g" if lang == "it" else "d"
    if days:
        return f"{days} {day} {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


# ---------------------------------------------------------------- header safety


def _header_text(value: object, what: str) -> str:
    """User text bound for a header: one line, no control characters, bounded length."""
    text = "" if value is None else str(value)
    for char in text:
        # Cc covers CR/LF/NUL; Zl/Zp (U+2028/9) are line breaks to str.splitlines() as well.
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise ComposeError(f"{what} contains a line break or control character")
    text = text.strip()
    if len(text) > MAX_HEADER_FIELD:
        text = text[: MAX_HEADER_FIELD - 1] + "…"
    return text


def _address(display_name: str, addr_spec: str, what: str) -> Address:
    """A validated Address; raises ComposeError when it cannot be a safe header."""
    name = _header_text(display_name, f"{what} name")
    spec = _header_text(addr_spec, f"{what} address")
    if spec.count("@") != 1 or not spec.isascii():
        raise ComposeError(f"{what} address is not a plain e-mail address")
    try:
        address = Address(display_name=name, addr_spec=spec)
    except (ValueError, IndexError, TypeError, HeaderParseError) as exc:
        raise ComposeError(f"{what} address is not valid ({exc})") from None
    if not address.username or not address.domain or "." not in address.domain:
        raise ComposeError(f"{what} address is not a plain e-mail address")
    return address


def _sender(settings: Settings) -> Address:
    name, spec = parseaddr(settings.smtp.sender)
    return _address(name, spec, "smtp.sender")


def _base_message(
    settings: Settings, subject: str, text: str, html: str, date: datetime
) -> EmailMessage:
    """A multipart/alternative message From the bot To the secretariat with a fixed Message-ID."""
    sender = _sender(settings)
    message = EmailMessage(policy=policy.default)
    message["Subject"] = _header_text(subject, "subject") if subject else "(no subject)"
    message["From"] = sender
    message["To"] = _address("", settings.secretariat.email, "secretariat.email")
    message["Date"] = format_datetime(date.astimezone(UTC))
    # Quoted-printable keeps the raw message 7-bit clean, so any server accepts it unchanged.
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def _message_id(settings: Settings, hint: str | None = None) -> str:
    domain = _sender(settings).domain
    idstring = hint if hint and _IDSTRING.match(hint) else None
    return make_msgid(idstring=idstring, domain=domain)


def _local_time(moment: datetime, settings: Settings, lang: str) -> str:
    zone = ZoneInfo(settings.timezone)
    formatted = babel_datetime(moment, "d MMMM y, HH:mm", tzinfo=zone, locale=lang)
    return f"{formatted} ({settings.timezone})"


def _moment(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    return from_iso(str(value))


def _faq_history(value: object) -> list[str]:
    if value is None or value == "":
        return []
    items = json.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(items, list):
        return []
    return [str(item) for item in items if str(item).strip()]


def _enquiry_context(settings: Settings, enquiry: Mapping[str, Any]) -> dict[str, Any]:
    lang = settings.secretariat.language
    created = _moment(enquiry["created_at"])
    username = enquiry.get("username") or ""
    username = username.lstrip("@") if isinstance(username, str) else ""
    channel = str(enquiry.get("channel") or "")
    applicant_lang = str(enquiry.get("lang") or "")
    return {
        "ref": str(enquiry["ref"]),
        "name": str(enquiry.get("name") or ""),
        "email": str(enquiry.get("email") or ""),
        "organisation": str(enquiry.get("organisation") or ""),
        "country": str(enquiry.get("country") or ""),
        "question": str(enquiry.get("question") or ""),
        "faq_history": _faq_history(enquiry.get("faq_history")),
        "language": _LANGUAGE_NAMES[lang].get(applicant_lang, applicant_lang),
        "channel": channel,
        "channel_name": _CHANNEL_NAMES[lang].get(channel, channel),
        "telegram_username": username if _TELEGRAM_USERNAME.match(username) else "",
        "chat_id": str(enquiry.get("chat_id") or ""),
        "created_local": _local_time(created, settings, lang),
        "status": str(enquiry.get("status") or "open"),
        "reminder_count": int(enquiry.get("reminder_count") or 0),
        # Whether the secretariat can also answer in the Telegram admin chat.
        "admin_chat": settings.telegram.admin_chat_id != 0,
    }


# ---------------------------------------------------------------- public builders


def enquiry_mail(settings: Settings, enquiry: Mapping[str, Any]) -> EmailMessage:
    """The e-mail that forwards one enquiry (an `enquiries` row) to the secretariat."""
    lang = settings.secretariat.language
    context = _enquiry_context(settings, enquiry)
    # Validate every header-bound value first, so a bad field never reaches the message.
    for key in ("ref", "organisation", "country"):
        context[key] = _header_text(context[key], key)
    reply_to = _address(context["name"], context["email"], "applicant")
    subject, text, html = _render_pair(lang, "enquiry", context)
    message = _base_message(settings, subject, text, html, _moment(enquiry["created_at"]))
    message["Reply-To"] = reply_to
    message["Message-ID"] = _message_id(settings, context["ref"].lower())
    message["X-Clusterbot-Ref"] = context["ref"]
    message["X-Clusterbot-Kind"] = "enquiry"
    return message


def reminder_mail(
    settings: Settings,
    enquiry: Mapping[str, Any],
    original_message_id: str | None,
    count: int,
    now: datetime | None = None,
) -> EmailMessage:
    """Reminder `count` (1-based) for an unanswered enquiry, threaded under the original mail."""
    lang = settings.secretariat.language
    moment = now or datetime.now(UTC)
    context = _enquiry_context(settings, enquiry)
    for key in ("ref", "organisation", "country"):
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
    if context["email"]:
        message["Reply-To"] = _address(context["name"], context["email"], "applicant")
    message["Message-ID"] = _message_id(settings, f"{context['ref'].lower()}-r{count}")
    if original_message_id:
        original = _header_text(original_message_id, "original Message-ID")
        message["In-Reply-To"] = original
        message["References"] = original
    message["X-Clusterbot-Ref"] = context["ref"]
    message["X-Clusterbot-Kind"] = "reminder"
    message["Auto-Submitted"] = "auto-generated"
    return message


def digest_mail(settings: Settings, digest: Digest) -> EmailMessage:
    """The daily digest of open enquiries and recent answers."""
    lang = settings.secretariat.language
    zone = ZoneInfo(settings.digest.timezone)
    items = [
        {
            "ref": item.ref,
            "organisation": item.organisation,
            "country": item.country,
            "channel": _CHANNEL_NAMES[lang].get(item.channel, item.channel),
            "created_local": babel_datetime(
                item.created_at, "d MMM y, HH:mm", tzinfo=zone, locale=lang
            ),
            "age": _format_age(item.age, lang),
            "reminder_count": item.reminder_count,
        }
        for item in digest.open
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
        "answered_count": digest.answered_count,
        "closed_count": digest.closed_count,
        "median_answer": _format_age(digest.median_answer, lang) if digest.median_answer else "",
        "timezone": settings.digest.timezone,
    }
    subject, text, html = _render_pair(lang, "digest", context)
    message = _base_message(settings, subject, text, html, digest.generated_at)
    message["Message-ID"] = _message_id(settings, "digest")
    message["X-Clusterbot-Kind"] = "digest"
    message["Auto-Submitted"] = "auto-generated"
    return message


def failure_context(
    settings: Settings, outbox: Mapping[str, Any], error: str, ref: str | None
) -> dict[str, Any]:
    """The facts of a permanent delivery failure, for the notice and the admin-chat report."""
    lang = settings.secretariat.language
    created = _moment(outbox["created_at"])
    return {
        "outbox_id": int(outbox["id"]),
        "kind": str(outbox["kind"]),
        "ref": ref or "",
        "message_id": str(outbox["message_id"]),
        "error": " ".join(str(error).split())[:500],
        "attempts": int(outbox.get("attempts") or 0),
        "created_local": _local_time(created, settings, lang),
    }


def failure_text(settings: Settings, outbox: Mapping[str, Any], error: str, ref: str | None) -> str:
    """The short plain-text report of a permanent failure (for the admin chat)."""
    lang = settings.secretariat.language
    text_env, _ = _environments()
    template = text_env.get_template(f"{lang}/failure.txt.j2")
    return template.render(failure_context(settings, outbox, error, ref)).strip()


def failure_mail(
    settings: Settings,
    outbox: Mapping[str, Any],
    error: str,
    ref: str | None,
    now: datetime,
) -> EmailMessage:
    """A notice to the secretariat that an earlier mail could not be delivered."""
    lang = settings.secretariat.language
    context = failure_context(settings, outbox, error, ref)
    subject, text, html = _render_pair(lang, "failure", context)
    message = _base_message(settings, subject, text, html, now)
    message["Message-ID"] = _message_id(settings, "failure")
    original = str(outbox.get("message_id") or "")
    if original:
        message["References"] = _header_text(original, "original Message-ID")
    if ref:
        message["X-Clusterbot-Ref"] = _header_text(ref, "ref")
    message["X-Clusterbot-Kind"] = "failure"
    message["Auto-Submitted"] = "auto-generated"
    return message


def outbox_row(
    message: EmailMessage, kind: str, enquiry_id: int | None, now: datetime
) -> dict[str, Any]:
    """The `outbox` columns for `message`: its raw bytes and Message-ID are fixed here."""
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    message_id = message["Message-ID"]
    if not message_id:
        raise ComposeError("the message has no Message-ID")
    _, mail_from = parseaddr(str(message["From"]))
    recipients = [
        addr
        for _, addr in getaddresses(
            [str(value) for header in ("To", "Cc", "Bcc") for value in message.get_all(header, [])]
        )
        if addr
    ]
    if not mail_from or not recipients:
        raise ComposeError("the message needs a From and at least one recipient")
    # Bcc must never travel in the message itself.
    del message["Bcc"]
    raw = message.as_bytes(policy=policy.SMTP)
    moment = to_iso(now)
    return {
        "kind": kind,
        "enquiry_id": enquiry_id,
        "message_id": str(message_id),
        "mail_from": mail_from,
        "rcpt_to": dumps(recipients),
        "raw": raw,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": moment,
        "created_at": moment,
    }


# ---------------------------------------------------------------- self-check


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
        "faq_history": dumps(["Qual è la scadenza?", "Chi può partecipare?"]),
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
            "reminder": lambda s=settings: reminder_mail(s, enquiry, "<x@example.org>", 1, now),
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
