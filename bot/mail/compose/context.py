"""What the templates show: an enquiry's values, names in the reader's language, the
transcript without personal data, first words, ages and local times."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime as babel_datetime

from bot.storage import from_iso

if TYPE_CHECKING:
    from bot.settings import Settings


LANGUAGES = ("it", "en")
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
# An address as typed in a sentence: the punctuation around it stays outside.
_EMAIL_LIKE = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
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
_TELEGRAM_USERNAME = re.compile(r"^[A-Za-z0-9_]{3,64}$")


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


# What stands in the transcript for personal data typed to the bot, per mail language.
_REDACTED = {
    "it": {"email": "[e-mail]", "phone": "[telefono]", "name": "[nome]"},
    "en": {"email": "[e-mail]", "phone": "[phone]", "name": "[name]"},
}


def _repeats_the_question(question: str, enquiry: Mapping[str, Any]) -> bool:
    """The enquiry's own question, shown above the transcript: not repeated as a turn."""
    value = _folded(str(enquiry.get("question") or ""))
    return bool(value) and _folded(question) == value


def redact(text: str, enquiry: Mapping[str, Any], lang: str = "en") -> str:
    """`text` with e-mail addresses, phone numbers and the applicant's name replaced by
    placeholders ('[e-mail]', '[phone]', '[name]'), so an exchange that held them can be
    shown without them."""
    marks = _REDACTED.get(lang, _REDACTED["en"])
    text = _EMAIL_LIKE.sub(marks["email"], text)
    text = _PHONE_LIKE.sub(marks["phone"], text)
    name = _one_line(str(enquiry.get("name") or ""))
    if len(name) >= 2:
        # The whole name only: a single word of it may be an ordinary one ("Costa").
        pattern = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)
        text = pattern.sub(marks["name"], text)
    return text


def transcript(enquiry: Mapping[str, Any], lang: str = "en") -> list[dict[str, str]]:
    """What the applicant asked the bot before the enquiry, and what the bot replied.

    `faq_history` holds the current conversation's FAQ turns, `{"q", "a", "faq_id"}` each
    (`a` None when the FAQ had no sure answer); rows from older releases hold only the
    questions. Every exchange is kept, in order: e-mail addresses, phone numbers and the
    applicant's name in it are replaced by placeholders in `lang` (`redact`), never dropped
    in silence. Left out are only stale menu numbers ('14') and a repeat of the enquiry's
    own question, which the mail shows above.
    """
    turns: list[dict[str, str]] = []
    for item in _history_items(enquiry.get("faq_history")):
        if isinstance(item, Mapping):
            question, answer, faq_id = item.get("q"), item.get("a"), item.get("faq_id")
        else:
            question, answer, faq_id = item, None, None
        question = _one_line(str(question or ""))
        if not question or _MENU_NUMBER.match(question) or _repeats_the_question(question, enquiry):
            continue
        answer_text = redact(str(answer or "").strip(), enquiry, lang)
        if len(answer_text) > TRANSCRIPT_ANSWER_CHARS:
            answer_text = answer_text[: TRANSCRIPT_ANSWER_CHARS - 1].rstrip() + "…"
        turns.append(
            {
                "q": first_words(redact(question, enquiry, lang), TRANSCRIPT_QUESTION_CHARS),
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
    from bot.enquiries.countries import OTHER, listed

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
    from bot.enquiries.countries import find_country

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
    from bot.enquiries.countries import OTHER_CODE, find_country

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
        "transcript": transcript(enquiry, lang),
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


def actor_name(actor: str, lang: str) -> str:
    """Who answered, as the audit names them: 'admin:42' -> 'Telegram 42', 'cli' -> 'CLI'."""
    if actor.startswith("admin:"):
        return f"Telegram {actor.partition(':')[2]}"
    names = _ACTOR_NAMES[lang]
    return names.get(actor, actor)
