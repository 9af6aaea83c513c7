"""Pure validation of the enquiry form's fields: each value is accepted, normalised or refused."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from email_validator import EmailNotValidError, validate_email

from bot.enquiries.countries import Country, find_country

FIELDS = ("name", "email", "organisation", "country", "question")
SINGLE_LINE = frozenset({"name", "email", "organisation", "country"})

# (minimum, maximum) characters after normalisation.
LIMITS: Mapping[str, tuple[int, int]] = {
    "name": (2, 100),
    "email": (3, 254),
    "organisation": (2, 200),
    "country": (2, 60),
    "question": (10, 4000),
}
# More words than this is a sentence, not a person's name.
MAX_NAME_WORDS = 8

# Line and paragraph separators count as line breaks: they would split a header too.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Bidirectional overrides let a name display as something else in a mail client.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SPACES = re.compile(r"\s+")
# Something@domain.tld anywhere in the value: an e-mail address, not an organisation's name.
_EMAIL_LIKE = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@.]{2,}")


class FieldError(Exception):
    """A refused value: `code` names the message in templates/bot, `params` fill it in."""

    def __init__(self, code: str, params: Mapping[str, int | str] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.params: Mapping[str, int | str] = dict(params or {})


def clean_surrogates(text: str) -> str:
    """Replace lone UTF-16 surrogates (they cannot be stored as UTF-8) with U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _check_length(name: str, value: str) -> str:
    low, high = LIMITS[name]
    if not value:
        raise FieldError("empty")
    if len(value) < low:
        raise FieldError("too_short", {"min": low})
    if len(value) > high:
        raise FieldError("too_long", {"max": high, "length": len(value)})
    return value


def _single_line(raw: str) -> str:
    text = unicodedata.normalize("NFC", clean_surrogates(raw)).strip()
    if any(char in _LINE_BREAKS for char in text):
        raise FieldError("multiline")
    if any(unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS for char in text):
        raise FieldError("control")
    return _SPACES.sub(" ", text)


def validate_name(raw: str) -> str:
    """A person's name: one line, 2-100 characters, at least one letter, up to 8 words.

    A question ('?'), an address ('@', '://') or a sentence typed here by mistake is refused.
    """
    value = _check_length("name", _single_line(raw))
    if not any(char.isalpha() for char in value):
        raise FieldError("no_letters")
    if "@" in value or "://" in value:
        raise FieldError("name_looks_wrong")
    if "?" in value or "\uff1f" in value or "\u00bf" in value:
        raise FieldError("name_question")
    if len(value.split()) > MAX_NAME_WORDS:
        raise FieldError("name_too_many_words", {"max": MAX_NAME_WORDS})
    return value


def validate_email_address(raw: str) -> str:
    """An e-mail address, syntax only (no DNS); normalised, in ASCII whenever it can be.

    An internationalised address (accented letters before the @) is valid and kept as
    such; whether the mail server can carry it (SMTPUTF8) is for the form to ask
    (bot.mail.smtputf8), not a question of validity.
    """
    value = _check_length("email", _single_line(raw))
    if " " in value or "<" in value or ">" in value:
        raise FieldError("email_invalid")
    try:
        result = validate_email(value, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        raise FieldError("email_invalid") from None
    return result.ascii_email or result.normalized


def validate_organisation(raw: str) -> str:
    """The organisation's name: one line, 2-200 characters, at least one letter.

    Refused, each with its own message: an e-mail address (the form asks for it separately;
    in the mail's subject it would look like a sender), a question typed here by mistake,
    and a value without a letter (digits and punctuation alone: a phone or VAT number, a
    dash for "none"). A web address alone is accepted: it names the organisation without
    doubt, and the secretariat can open it.
    """
    value = _check_length("organisation", _single_line(raw))
    if _EMAIL_LIKE.search(value):
        raise FieldError("organisation_email")
    if value.endswith(("?", "\uff1f")) or "\u00bf" in value:
        raise FieldError("organisation_question")
    if not any(char.isalpha() for char in value):
        raise FieldError("organisation_no_letters")
    return value


def validate_country(raw: str) -> Country:
    """A country typed in Italian or English, or an ISO code, or 'other'."""
    value = _check_length("country", _single_line(raw))
    country = find_country(value)
    if country is None:
        raise FieldError("country_unknown")
    return country


def validate_question(raw: str) -> str:
    """The question: may span lines and hold tabs, but no other control characters."""
    text = unicodedata.normalize("NFC", clean_surrogates(raw))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    for char in text:
        if char in "\n\t":
            continue
        if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS:
            raise FieldError("control")
    # Trailing spaces and runs of blank lines carry nothing and bloat the e-mail.
    lines = [line.rstrip() for line in text.strip().split("\n")]
    value = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    value = _check_length("question", value)
    if not any(char.isalnum() for char in value):
        raise FieldError("no_letters")
    return value


def validate_field(name: str, raw: str) -> str:
    """Validate one field by name; country values come back as the stored (English) name."""
    if name == "name":
        return validate_name(raw)
    if name == "email":
        return validate_email_address(raw)
    if name == "organisation":
        return validate_organisation(raw)
    if name == "country":
        return validate_country(raw).stored
    if name == "question":
        return validate_question(raw)
    raise ValueError(f"unknown form field {name!r}")


def missing_fields(draft: Mapping[str, object]) -> list[str]:
    """The fields still to ask, in form order."""
    return [name for name in FIELDS if not draft.get(name)]


def validate_draft(draft: Mapping[str, object]) -> dict[str, str]:
    """Re-validate a whole draft (e.g. one read back from a session); raise on the first error."""
    clean: dict[str, str] = {}
    for name in FIELDS:
        value = draft.get(name)
        if not isinstance(value, str):
            raise FieldError("empty", {"field": name})
        clean[name] = validate_field(name, value)
    return clean
