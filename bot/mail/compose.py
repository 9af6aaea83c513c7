"""Build the secretariat's e-mails from templates: pure functions, no I/O besides templates."""

from __future__ import annotations

import json
import random
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import charset as email_charset
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UniqueUnstructuredHeader
from email.message import EmailMessage
from email.utils import getaddresses, make_msgid, parseaddr
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_datetime as babel_datetime

from bot.deliveries.model import NewDelivery
from bot.storage import dumps, from_iso

if TYPE_CHECKING:
    from bot.settings import Settings

LANGUAGES = ("it", "en")
KINDS = (
    "enquiry",
    "reminder",
    "reminders",
    "digest",
    "failure",
    "acknowledgement",
    "answer",
    "follow_up",
)
# Header values from users are kept short: a subject line stays readable in every client.
MAX_HEADER_FIELD = 200
# A subject names the question by its first words and the organisation, both cut short.
SUBJECT_QUESTION_CHARS = 50
SUBJECT_ORGANISATION_CHARS = 48
# Values of the enquiry context that go into the Subject: each is checked like a header.
HEADER_KEYS = (
    "ref",
    "organisation",
    "country",
    "question_start",
    "organisation_short",
    "country_code",
)
# The enquiry mail's transcript: the last turns, each side cut short.
TRANSCRIPT_TURNS = 10
TRANSCRIPT_QUESTION_CHARS = 300
TRANSCRIPT_ANSWER_CHARS = 600
# A stale menu choice ("14", "3.") is not a question.
_MENU_NUMBER = re.compile(r"^\s*\d{1,3}\s*[.)]?\s*$")
_EMAIL_LIKE = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]{2,}")
# Seven or more digits, spaces, dots or dashes between them: a phone number, not a year.
_PHONE_LIKE = re.compile(r"\+?\d(?:[\s./-]?\d){6,}")

_LANGUAGE_NAMES = {
    "it": {"it": "italiano", "en": "inglese"},
    "en": {"it": "Italian", "en": "English"},
}
_CHANNEL_NAMES = {
    "it": {"telegram": "Telegram", "console": "terminale (clusterbot chat)"},
    "en": {"telegram": "Telegram", "console": "terminal (clusterbot chat)"},
}
_ACTOR_NAMES = {
    "it": {"cli": "riga di comando", "system": "il bot", "applicant": "il richiedente"},
    "en": {"cli": "command line", "system": "the bot", "applicant": "the applicant"},
}
# The digest shows each question by its beginning.
DIGEST_QUESTION_CHARS = 90
# A grouped reminder's subject lists the references up to this length ("… and 12 more").
GROUPED_SUBJECT_REFS_CHARS = 120
# At most this many original Message-IDs in a grouped reminder's References header.
MAX_REFERENCES = 20
_TELEGRAM_USERNAME = re.compile(r"^[A-Za-z0-9_]{3,64}$")
_IDSTRING = re.compile(r"^[A-Za-z0-9-]{1,40}$")


class ComposeError(ValueError):
    """A value cannot go into a mail header (CR/LF, control characters, a bad address)."""


class _HeaderRegistry(HeaderRegistry):
    """The stdlib header registry, remembering the class it makes for each header name.

    HeaderRegistry.__getitem__ builds a brand-new class with type() for every header set or
    parsed: a large share of composing a mail, and cyclic garbage for the collector. The
    classes (hence the headers and their serialisation) are exactly the stdlib's.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        self._classes.clear()
        super().map_to_type(name, cls)

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        found = self._classes.get(key)
        if found is None:
            found = self._classes[key] = super().__getitem__(name)
        return found


# Encoded words in subjects are quoted-printable: "Citt=C3=A0" stays readable in raw mail.
_QP_UTF8 = email_charset.Charset("utf-8")
_QP_UTF8.header_encoding = email_charset.QP
# RFC 2047: an encoded word is at most 75 characters long.
_ENCODED_WORD_MAX = 75


def _plain_word(word: str) -> bool:
    """A word a Subject can carry as it is: printable ASCII, not like an encoded word."""
    return word.isascii() and word.isprintable() and "=?" not in word


def _encoded_words(text: str) -> list[str]:
    """`text` as RFC 2047 encoded words, each at most 75 characters, split between characters."""
    words: list[str] = []
    chunk = ""
    for char in text:
        if chunk and len(_QP_UTF8.header_encode(chunk + char)) > _ENCODED_WORD_MAX:
            words.append(_QP_UTF8.header_encode(chunk))
            chunk = ""
        chunk += char
    if chunk:
        words.append(_QP_UTF8.header_encode(chunk))
    return words


def subject_atoms(value: str) -> list[str]:
    """The Subject's words as they travel: plain ASCII words, or encoded words for the rest.

    A space between two encoded words is dropped by every reader, so the space before a
    non-ASCII word that follows another one travels inside its encoded word.
    """
    atoms: list[str] = []
    previous_encoded = False
    for word in value.split():
        if _plain_word(word):
            atoms.append(word)
            previous_encoded = False
        else:
            atoms.extend(_encoded_words(f" {word}" if previous_encoded else word))
            previous_encoded = True
    return atoms


def fold_subject(name: str, value: str, linesep: str = "\r\n", width: int = 78) -> str:
    """`name: value` folded at spaces only after its first word, lines of at most `width`.

    The stdlib folder may break right after "Subject:" (a long organisation name, an
    encoded word) and so defeat mail filters such as `^\\[ECCP`: here the first word (the
    reference, "[ECCP-0042]") always stays on the first line with the header name.
    """
    atoms = subject_atoms(value)
    if not atoms:
        return f"{name}:{linesep}"
    lines: list[str] = []
    line = f"{name}: {atoms[0]}"
    for atom in atoms[1:]:
        if len(line) + 1 + len(atom) <= width:
            line = f"{line} {atom}"
        else:
            lines.append(line)
            line = f" {atom}"
    lines.append(line)
    return linesep.join(lines) + linesep


class SubjectHeader(UniqueUnstructuredHeader):
    """The stdlib Subject header, folded by fold_subject (the reference stays on line one).

    The registry combines it with BaseHeader (which supplies `name`), as for every header.
    """

    def fold(self, *, policy: policy.Policy) -> str:
        name = str(getattr(self, "name", "Subject"))
        return fold_subject(name, str(self), policy.linesep, policy.max_line_length or 78)


def _header_registry() -> _HeaderRegistry:
    registry = _HeaderRegistry()
    registry.map_to_type("subject", cast("type[BaseHeader]", SubjectHeader))
    return registry


# The default policy (and the SMTP one: the same with CRLF line ends), with the memoising
# registry above. Messages, headers and bytes are those of policy.default / policy.SMTP,
# except that the Subject is folded by fold_subject.
POLICY = policy.default.clone(header_factory=_header_registry())
SMTP_POLICY = POLICY.clone(linesep="\r\n")
SMTP_UTF8_POLICY = SMTP_POLICY.clone(utf8=True)


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


# ---------------------------------------------------------------- templates


class _Templates:
    """The (text, html) Jinja environments and every template loaded so far.

    Templates are compiled once per process (auto_reload off: no stat() per render); an
    edited template takes effect at the next start.
    """

    def __init__(self, directory: str) -> None:
        loader = jinja2.FileSystemLoader(directory)
        self.text = jinja2.Environment(
            loader=loader,
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        # Explicitly on: select_autoescape() would not match the `.html.j2` suffix.
        self.html = jinja2.Environment(
            loader=loader,
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._loaded: dict[tuple[bool, str], jinja2.Template] = {}

    def get(self, name: str, *, html: bool = False) -> jinja2.Template:
        """The compiled template `name` (from the html environment when `html`)."""
        key = (html, name)
        template = self._loaded.get(key)
        if template is None:
            environment = self.html if html else self.text
            template = self._loaded[key] = environment.get_template(name)
        return template


@cache
def _environments() -> _Templates:
    """The templates; built lazily so importing this module touches no files."""
    from bot.resources import templates_dir

    return _Templates(str(templates_dir() / "mail"))


def _render_pair(lang: str, name: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
    """Render (subject, text, html) of template `name` in `lang`."""
    templates = _environments()
    subject = templates.get(f"{lang}/{name}.subject.j2").render(context)
    subject = " ".join(subject.split())
    text = templates.get(f"{lang}/{name}.txt.j2").render(context)
    html = templates.get(f"{lang}/{name}.html.j2", html=True).render(context)
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


def _address(
    display_name: str, addr_spec: str, what: str, *, international: bool = False
) -> Address:
    """A validated Address; raises ComposeError when it cannot be a safe header.

    `international` admits an address with non-ASCII letters (an applicant's, accepted by
    the form only when the mail server offers SMTPUTF8); message_bytes then writes the
    message with UTF-8 headers.
    """
    name = _header_text(display_name, f"{what} name")
    spec = _header_text(addr_spec, f"{what} address")
    if spec.count("@") != 1 or not (spec.isascii() or international):
        raise ComposeError(f"{what} address is not a plain e-mail address")
    try:
        if spec.isascii():
            address = Address(display_name=name, addr_spec=spec)
        else:
            # The stdlib parser refuses non-ASCII local parts (RFC 5322); RFC 6531 allows
            # them. The form validated the address (email-validator, allow_smtputf8).
            username, _, domain = spec.partition("@")
            if any(char in username for char in ' "<>()[]\\,;:@'):
                raise ValueError("special characters in an internationalised local part")
            address = Address(display_name=name, username=username, domain=domain)
    except (ValueError, IndexError, TypeError, HeaderParseError) as exc:
        raise ComposeError(f"{what} address is not valid ({exc})") from None
    if not address.username or not address.domain or "." not in address.domain:
        raise ComposeError(f"{what} address is not a plain e-mail address")
    return address


@dataclass(frozen=True)
class _Fixed:
    """What every mail of one configuration shares: validated From and To, built once."""

    sender: Address
    from_header: BaseHeader
    to_header: BaseHeader


@lru_cache(maxsize=16)
def _fixed_headers(sender: str, secretariat: str) -> _Fixed:
    """The From and To headers for these settings values (a failure is not cached)."""
    name, spec = parseaddr(sender)
    address = _address(name, spec, "smtp.sender")
    to = _address("", secretariat, "secretariat.email")
    # Header objects are immutable: a message stores them as they are, without re-parsing.
    factory = POLICY.header_factory
    return _Fixed(address, factory("From", address), factory("To", to))


def _fixed(settings: Settings) -> _Fixed:
    return _fixed_headers(settings.smtp.sender, settings.secretariat.email)


def _sender(settings: Settings) -> Address:
    return _fixed(settings).sender


def _boundary() -> str:
    """A MIME boundary in the stdlib generator's own format.

    Fixed before serialising, so the generator does not compile a fresh regex per mail to
    check it against the text: no line of a quoted-printable part can be "--=====..."
    (a literal "=" is written "=3D" there).
    """
    return "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="


def _base_message(
    settings: Settings,
    subject: str,
    text: str,
    html: str,
    date: datetime,
    to: Address | None = None,
) -> EmailMessage:
    """A multipart/alternative message From the bot To the secretariat (or `to`)."""
    fixed = _fixed(settings)
    message = EmailMessage(policy=POLICY)
    message["Subject"] = _header_text(subject, "subject") if subject else "(no subject)"
    message["From"] = fixed.from_header
    message["To"] = fixed.to_header if to is None else to
    message["Date"] = date.astimezone(UTC)
    # Quoted-printable keeps the raw message 7-bit clean, so any server accepts it unchanged.
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.make_alternative(boundary=_boundary())
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    # Every mail of the bot is machine-made (RFC 3834): auto-responders must not answer it,
    # and Exchange/Outlook is asked not to send out-of-office or read receipts back.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
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


def _history_items(value: object) -> list[Any]:
    if value is None or value == "":
        return []
    try:
        items = json.loads(value) if isinstance(value, str | bytes) else value
    except ValueError:
        return []
    return items if isinstance(items, list) else []


def _folded(text: str) -> str:
    return _one_line(text).casefold()


def _private(question: str, enquiry: Mapping[str, Any]) -> bool:
    """Whether a line typed to the bot is form input or personal data, not a question."""
    if _EMAIL_LIKE.search(question) or _PHONE_LIKE.search(question):
        return True
    folded = _folded(question)
    # A form answer typed before the form opened: the name, the organisation, the country.
    for key in ("name", "email", "organisation", "country", "question"):
        value = _folded(str(enquiry.get(key) or ""))
        if value and (folded == value or (key in ("name", "email") and value in folded)):
            return True
    return False


def transcript(enquiry: Mapping[str, Any]) -> list[dict[str, str]]:
    """What the applicant asked the bot before the enquiry, and what the bot replied.

    `faq_history` holds the current conversation's FAQ turns, `{"q", "a", "faq_id"}` each
    (`a` None when the FAQ had no sure answer); rows from older releases hold only the
    questions. Menu numbers, e-mail addresses, phone numbers and form answers typed outside
    the form are left out: the mail shows questions, never personal data.
    """
    turns: list[dict[str, str]] = []
    for item in _history_items(enquiry.get("faq_history")):
        if isinstance(item, Mapping):
            question, answer, faq_id = item.get("q"), item.get("a"), item.get("faq_id")
        else:
            question, answer, faq_id = item, None, None
        question = _one_line(str(question or ""))
        if not question or _MENU_NUMBER.match(question) or _private(question, enquiry):
            continue
        answer_text = str(answer or "").strip()
        if len(answer_text) > TRANSCRIPT_ANSWER_CHARS:
            answer_text = answer_text[: TRANSCRIPT_ANSWER_CHARS - 1].rstrip() + "…"
        turns.append(
            {
                "q": first_words(question, TRANSCRIPT_QUESTION_CHARS),
                "a": answer_text,
                "faq_id": str(faq_id) if isinstance(faq_id, str) else "",
                # True for turns recorded with their reply; old rows know only the question.
                "recorded": "yes" if isinstance(item, Mapping) else "",
            }
        )
    return turns[-TRANSCRIPT_TURNS:]


@cache
def _italian_country_names() -> dict[str, str]:
    """English name -> Italian name of the form's listed countries (the usual ones)."""
    from bot.dialogue.countries import OTHER, listed

    names = {country.en: country.it for country in listed()}
    names[OTHER.en] = OTHER.it
    return names


@lru_cache(maxsize=512)
def country_name(stored: str, lang: str) -> str:
    """A stored country (its English name, as the form writes it) in `lang`.

    Anything the country list does not know is shown as stored.
    """
    if lang != "it" or not stored or not stored.isprintable():
        # A value with a line break is left as it is, for the header check to refuse it.
        return stored
    name = _italian_country_names().get(stored)
    if name is not None:
        return name
    # Imported here: the country list (and Babel's territory names) only when needed.
    from bot.dialogue.countries import find_country

    country = find_country(stored)
    return country.label(lang) if country is not None else stored


def language_name(code: str, lang: str) -> str:
    """A language code ('it') by its name in `lang` ('italiano', 'Italian'); else as given."""
    return _LANGUAGE_NAMES.get(lang, _LANGUAGE_NAMES["en"]).get(code, code)


@lru_cache(maxsize=512)
def country_code(stored: str) -> str:
    """A stored country as its ISO code ('Italy' -> 'IT') for subjects; else as stored."""
    if not stored or not stored.isprintable():
        return stored
    from bot.dialogue.countries import OTHER_CODE, find_country

    country = find_country(stored)
    if country is None or country.code == OTHER_CODE:
        return stored
    return country.code


def _one_line(text: str) -> str:
    """Text on one line: whitespace collapsed, control and format characters dropped."""
    kept = "".join(
        " " if char.isspace() else char
        for char in text
        if char.isspace() or unicodedata.category(char)[0] != "C"
    )
    return " ".join(kept.split())


def first_words(text: object, limit: int) -> str:
    """The first words of `text` on one line, at most `limit` characters, '…' when cut."""
    line = _one_line("" if text is None else str(text))
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut and not line[limit - 1].isspace():
        # Whole words only, unless a single word fills the whole limit.
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.-–—&(") + "…"


def _enquiry_context(
    settings: Settings, enquiry: Mapping[str, Any], lang: str | None = None
) -> dict[str, Any]:
    """What the templates show of an enquiry, in `lang` (default: the secretariat's)."""
    lang = lang or settings.secretariat.language
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
        "country": country_name(str(enquiry.get("country") or ""), lang),
        "question": str(enquiry.get("question") or ""),
        # For subjects: what is asked, and who asks, short enough to read in a mail list.
        "question_start": first_words(enquiry.get("question"), SUBJECT_QUESTION_CHARS),
        "organisation_short": first_words(enquiry.get("organisation"), SUBJECT_ORGANISATION_CHARS),
        "country_code": country_code(_one_line(str(enquiry.get("country") or ""))),
        "transcript": transcript(enquiry),
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


def _reply_to(context: Mapping[str, Any], bot_address: str | None) -> Address:
    """The bot's per-enquiry address when an inbox reads replies, else the applicant."""
    if bot_address:
        return _address("", bot_address, "inbox.reply_address")
    return _address(context["name"], context["email"], "applicant", international=True)


def enquiry_mail(
    settings: Settings, enquiry: Mapping[str, Any], reply_address: str | None = None
) -> EmailMessage:
    """The e-mail that forwards one enquiry (an `enquiries` row) to the secretariat.

    `reply_address`: the bot's address for this enquiry (an inbox is configured), so that
    "Reply" reaches the bot; else Reply-To is the applicant.
    """
    lang = settings.secretariat.language
    context = _enquiry_context(settings, enquiry)
    # Validate every header-bound value first, so a bad field never reaches the message.
    for key in HEADER_KEYS:
        context[key] = _header_text(context[key], key)
    reply_to = _reply_to(context, reply_address)
    context["inbox"] = bool(reply_address)
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
    if original_message_id:
        original = _header_text(original_message_id, "original Message-ID")
        message["In-Reply-To"] = original
        message["References"] = original
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


def acknowledgement_mail(settings: Settings, enquiry: Mapping[str, Any]) -> EmailMessage:
    """The confirmation to the applicant, in their language: reference, question, next steps.

    Replies go to the secretariat (Reply-To), so "reply to this e-mail" is a way to follow up.
    """
    lang = str(enquiry.get("lang") or "")
    lang = lang if lang in LANGUAGES else settings.language
    context = _enquiry_context(settings, enquiry, lang)
    context["ref"] = _header_text(context["ref"], "ref")
    applicant = _address(context["name"], context["email"], "applicant", international=True)
    context.update(
        created_local=_local_time(_moment(enquiry["created_at"]), settings, lang),
        secretariat=settings.secretariat.email,
        telegram=context["channel"] == "telegram",
    )
    subject, text, html = _render_pair(lang, "acknowledgement", context)
    message = _base_message(
        settings, subject, text, html, _moment(enquiry["created_at"]), to=applicant
    )
    message["Reply-To"] = _fixed(settings).to_header
    message["Message-ID"] = _message_id(settings, f"{context['ref'].lower()}-ack")
    message["X-Clusterbot-Ref"] = context["ref"]
    message["X-Clusterbot-Kind"] = "acknowledgement"
    return message


def answer_mail(
    settings: Settings,
    enquiry: Mapping[str, Any],
    answer: str,
    *,
    now: datetime,
    attachments: int = 0,
    reply_address: str | None = None,
) -> EmailMessage:
    """The secretariat's answer to the applicant, in their language, their question quoted.

    No secretariat address appears: From is the bot, and Reply-To is the bot's address for
    the enquiry when an inbox reads replies (a reply becomes a follow-up), else absent.
    """
    lang = str(enquiry.get("lang") or "")
    lang = lang if lang in LANGUAGES else settings.language
    context = _enquiry_context(settings, enquiry, lang)
    context["ref"] = _header_text(context["ref"], "ref")
    applicant = _address(context["name"], context["email"], "applicant")
    context.update(
        answer=answer,
        attachments=attachments,
        can_reply=bool(reply_address),
        telegram=context["channel"] == "telegram",
        created_local=_local_time(_moment(enquiry["created_at"]), settings, lang),
    )
    subject, text, html = _render_pair(lang, "answer", context)
    message = _base_message(settings, subject, text, html, now, to=applicant)
    if reply_address:
        message["Reply-To"] = _address("", reply_address, "inbox.reply_address")
    message["Message-ID"] = _message_id(settings, f"{context['ref'].lower()}-answer")
    message["X-Clusterbot-Ref"] = context["ref"]
    message["X-Clusterbot-Kind"] = "answer"
    return message


def follow_up_mail(
    settings: Settings,
    enquiry: Mapping[str, Any],
    follow_up: str,
    *,
    now: datetime,
    via_email: bool,
    reply_address: str | None = None,
    original_message_id: str | None = None,
) -> EmailMessage:
    """The applicant wrote again about an enquiry: forwarded to the secretariat, reference kept."""
    lang = settings.secretariat.language
    context = _enquiry_context(settings, enquiry)
    for key in ("ref", "organisation", "country"):
        context[key] = _header_text(context[key], key)
    context.update(
        follow_up=follow_up,
        via_email=via_email,
        inbox=bool(reply_address),
        previous_answer=str(enquiry.get("answer") or ""),
        received_local=_local_time(now, settings, lang),
    )
    subject, text, html = _render_pair(lang, "follow_up", context)
    message = _base_message(settings, subject, text, html, now)
    message["Reply-To"] = _reply_to(context, reply_address)
    message["Message-ID"] = _message_id(settings, f"{context['ref'].lower()}-followup")
    if original_message_id:
        original = _header_text(original_message_id, "original Message-ID")
        message["In-Reply-To"] = original
        message["References"] = original
    message["X-Clusterbot-Ref"] = context["ref"]
    message["X-Clusterbot-Kind"] = "follow_up"
    return message


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


def actor_name(actor: str, lang: str) -> str:
    """Who answered, as the audit names them: 'admin:42' -> 'Telegram 42', 'cli' -> 'CLI'."""
    if actor.startswith("admin:"):
        return f"Telegram {actor.partition(':')[2]}"
    names = _ACTOR_NAMES[lang]
    return names.get(actor, actor)


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
    template = _environments().get(f"{lang}/failure.txt.j2")
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
    return message


def mail_delivery(message: EmailMessage, kind: str, enquiry_id: int | None) -> NewDelivery:
    """The delivery of `message`: its raw bytes and Message-ID (the key) are fixed here."""
    if kind not in KINDS:
        raise ValueError(f"unknown mail kind {kind!r}")
    message_id = message["Message-ID"]
    if not message_id:
        raise ComposeError("the message has no Message-ID")
    senders = _addr_specs(message.get_all("From", []))
    mail_from = senders[0] if senders else ""
    recipients = _addr_specs(
        value for header in ("To", "Cc", "Bcc") for value in message.get_all(header, [])
    )
    if not mail_from or not recipients:
        raise ComposeError("the message needs a From and at least one recipient")
    # Bcc must never travel in the message itself.
    del message["Bcc"]
    # Serialised once, here; the bytes are stored and sent as they are, never re-parsed.
    raw = message_bytes(message)
    return NewDelivery(
        transport="smtp",
        kind=kind,
        recipient=dumps(recipients),
        payload=raw,
        idempotency_key=str(message_id),
        enquiry_id=enquiry_id,
        sender=mail_from,
    )


def needs_utf8(message: EmailMessage) -> bool:
    """Whether an address in the message has non-ASCII letters (it must travel SMTPUTF8)."""
    headers = ("From", "To", "Cc", "Reply-To")
    specs = _addr_specs(value for name in headers for value in message.get_all(name, []))
    return not all(spec.isascii() for spec in specs)


def message_bytes(message: EmailMessage) -> bytes:
    """The message as sent: 7-bit clean, or with UTF-8 headers (RFC 6532) when an address
    needs them (such a mail is sent with the SMTPUTF8 option)."""
    return message.as_bytes(policy=SMTP_UTF8_POLICY if needs_utf8(message) else SMTP_POLICY)


def _addr_specs(values: Iterable[Any]) -> list[str]:
    """The plain addresses in address headers, reusing the header objects' parse."""
    specs: list[str] = []
    for value in values:
        addresses = getattr(value, "addresses", None)
        if addresses is None:
            specs.extend(addr for _, addr in getaddresses([str(value)]) if addr)
        else:
            specs.extend(address.addr_spec for address in addresses if address.addr_spec)
    return specs


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
