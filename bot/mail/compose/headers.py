"""Header safety and Subject folding: user text checked before it reaches a header, the
From/To of a configuration built once, and the policies every mail is written with."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from email import charset as email_charset
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UniqueUnstructuredHeader
from email.utils import parseaddr
from functools import lru_cache
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from bot.settings import Settings


# Header values from users are kept short: a subject line stays readable in every client.
MAX_HEADER_FIELD = 200


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
