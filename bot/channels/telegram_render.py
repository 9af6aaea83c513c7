"""Pure formatting for Telegram: plain text -> safe HTML chunks, buttons -> callback data.

No Telegram import: the adapter and the notification worker share these, and tests check
them directly. Every user-visible string is escaped here; nothing else builds HTML.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import jinja2
import yaml

# Telegram's limit is 4 096 characters after entity parsing (counted in UTF-16 units);
# staying a little below leaves room for the bold title and a continuation mark.
MAX_MESSAGE = 4000
MAX_CALLBACK_DATA = 64
# Labels this short go two to a row; longer ones get a row each.
SHORT_LABEL = 14
# Prefix of the admin chat's own buttons; dialogue engine button ids never contain "|".
ADMIN_PREFIX = "adm|"
LANGUAGES = ("it", "en")
BOTFATHER_HELP = (
    "no Telegram bot token: set TELEGRAM_BOT_TOKEN or telegram.token in the settings file. "
    "To get a token, open Telegram, talk to @BotFather, send /newbot and copy the token it "
    "gives you"
)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]")


class ButtonLike(Protocol):
    """What the engine's Button offers."""

    @property
    def id(self) -> str: ...

    @property
    def label(self) -> str: ...


def clean(text: str) -> str:
    """Make any text safe to send: no control characters, no lone surrogates, LF only."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    text = _CONTROL.sub("", text)
    return unicodedata.normalize("NFC", text)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it."""
    return len(text.encode("utf-16-le")) // 2


def escape(text: str) -> str:
    """HTML-escape cleaned text for parse_mode HTML: only &, < and > (Telegram's list).

    Quotes stay as they are in text (an Italian apostrophe must not become &#x27;); use
    escape_attribute() for attribute values.
    """
    return html.escape(clean(text), quote=False)


def escape_attribute(text: str) -> str:
    """HTML-escape cleaned text for a double-quoted attribute value (href): quotes too."""
    return html.escape(clean(text), quote=True)


def split_text(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Split plain text into pieces of at most `limit` UTF-16 units, on line boundaries."""
    if utf16_len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.split("\n"):
        for part in _split_long_line(line, limit):
            extra = utf16_len(part) + (1 if current else 0)
            if current and size + extra > limit:
                pieces.append("\n".join(current))
                current, size = [], 0
                extra = utf16_len(part)
            current.append(part)
            size += extra
    if current:
        pieces.append("\n".join(current))
    return [p for p in pieces if p.strip()] or [text[:limit]]


def _split_long_line(line: str, limit: int) -> list[str]:
    if utf16_len(line) <= limit:
        return [line]
    parts: list[str] = []
    while utf16_len(line) > limit:
        cut = limit
        # Count in UTF-16 units: characters outside the BMP take two.
        while utf16_len(line[:cut]) > limit:
            cut -= 1
        space = line.rfind(" ", limit // 2, cut)
        if space > 0:
            cut = space
        parts.append(line[:cut])
        line = line[cut:].lstrip(" ")
    if line:
        parts.append(line)
    return parts


def to_html_chunks(text: str, title: str | None = None, limit: int = MAX_MESSAGE) -> list[str]:
    """Plain text (and an optional bold title) -> HTML messages, each within the limit."""
    body = clean(text).strip("\n")
    head = clean(title).strip() if title else ""
    chunks = split_text(body, limit - (utf16_len(head) + 2 if head else 0)) if body else []
    out = [html.escape(chunk, quote=False) for chunk in chunks]
    if head:
        bold = f"<b>{html.escape(head, quote=False)}</b>"
        if out:
            out[0] = f"{bold}\n{out[0]}"
        else:
            out = [bold]
    # Telegram refuses empty messages; an engine reply is never meant to be silent.
    return [chunk for chunk in out if chunk.strip()] or ["…"]


def callback_data(button_id: str) -> str:
    """The engine's button id as callback_data (the engine keeps ids under 40 bytes)."""
    data = clean(button_id)
    if not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA:
        # Never sent as is: Telegram would refuse the whole message. The engine answers an
        # unknown id as a stale button.
        data = data.encode("utf-8")[:MAX_CALLBACK_DATA].decode("utf-8", "ignore") or "noop"
    return data


def keyboard(buttons: Sequence[ButtonLike]) -> tuple[tuple[tuple[str, str], ...], ...]:
    """Engine buttons -> rows of (callback_data, label)."""
    items = [(callback_data(b.id), clean(b.label).strip() or b.id) for b in buttons]
    if all(len(label) <= SHORT_LABEL for _, label in items):
        return tuple(tuple(items[i : i + 2]) for i in range(0, len(items), 2))
    return tuple((item,) for item in items)


def admin_data(action: str, ref: str) -> str:
    """callback_data of an admin button on an enquiry post."""
    return f"{ADMIN_PREFIX}{action}|{ref}"[:MAX_CALLBACK_DATA]


def parse_admin_data(data: str) -> tuple[str, str] | None:
    """(action, ref) from admin callback_data, or None if it is not one."""
    if not data.startswith(ADMIN_PREFIX):
        return None
    action, _, ref = data[len(ADMIN_PREFIX) :].partition("|")
    return (action, ref) if action and ref else None


# -- the channel's own texts (templates/telegram/<lang>.yaml) ------------------------------


class ChannelTexts:
    """Texts of the Telegram channel, per language: Jinja2 templates producing plain text."""

    def __init__(self, data: Mapping[str, Mapping[str, Any]]) -> None:
        env = jinja2.Environment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
        )
        self._raw = data
        self._templates = {
            lang: {k: env.from_string(v) for k, v in entries.items() if isinstance(v, str)}
            for lang, entries in data.items()
        }

    @classmethod
    def load(cls, directory: Path | None = None) -> ChannelTexts:
        """Load it.yaml and en.yaml from templates/telegram/."""
        return _load(directory)

    def get(self, lang: str, key: str, **values: Any) -> str:
        """One text rendered in `lang` (falling back to English)."""
        templates = self._templates.get(lang) or self._templates["en"]
        return templates[key].render(**values)

    def has(self, lang: str, key: str) -> bool:
        """Whether `key` is a text in `lang` (or in English, the fallback)."""
        return key in (self._templates.get(lang) or self._templates["en"])

    def menu(self, lang: str, key: str) -> dict[str, str]:
        """A mapping section (the command menus)."""
        section = (self._raw.get(lang) or self._raw["en"])[key]
        return {str(k): str(v) for k, v in dict(section).items()}


@cache
def _load(directory: Path | None) -> ChannelTexts:
    if directory is None:
        from bot.resources import templates_dir

        directory = templates_dir() / "telegram"
    data = {}
    for lang in LANGUAGES:
        with (directory / f"{lang}.yaml").open(encoding="utf-8") as handle:
            data[lang] = yaml.safe_load(handle)
    return ChannelTexts(data)


def check_texts(directory: Path | None = None) -> list[str]:
    """Problems with the channel texts (missing keys between languages), for `check`."""
    texts = ChannelTexts.load(directory)
    keys = [set(texts._raw[lang]) for lang in LANGUAGES]
    missing = keys[0] ^ keys[1]
    return [f"templates/telegram: key '{key}' is not in both languages" for key in sorted(missing)]


def lines(items: Iterable[str]) -> str:
    """Join non-empty lines."""
    return "\n".join(item for item in items if item)
