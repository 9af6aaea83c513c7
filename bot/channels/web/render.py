"""Pure pieces of the web channel: session tokens, replies as JSON, links from known URLs.

The browser renders every string with textContent; the only markup it builds is a link, and
only for a URL listed here (the call's facts and sources, the secretariat's address).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from bot.channels.telegram_render import clean

TOKEN_BYTES = 24
# base64url of 24 bytes: exactly 32 characters.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
_URL = re.compile(r"https?://[^\s<>\"'`]+")
_TRAILING = ".,;:!?)]}»\"'"
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


class ButtonLike(Protocol):
    """What the engine's Button offers."""

    @property
    def id(self) -> str: ...

    @property
    def label(self) -> str: ...


class ReplyLike(Protocol):
    """What the engine's Reply offers."""

    @property
    def text(self) -> str: ...

    @property
    def title(self) -> str | None: ...

    @property
    def buttons(self) -> Sequence[ButtonLike]: ...


def new_token() -> str:
    """A fresh anonymous session token: unguessable, held only by the browser."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def valid_token(value: str | None) -> bool:
    """Whether `value` has the shape of a token this server hands out."""
    return bool(value) and _TOKEN.fullmatch(value or "") is not None


def session_id(token: str) -> str:
    """The engine's user_id for a token: a hash, so the database never holds the token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()[:32]


def known_links(kb: Any, secretariat_email: str) -> frozenset[str]:
    """Every URL the bot may turn into a link: the call's URL facts and all fact sources."""
    found: set[str] = set()
    for fact in kb.call.facts.values():
        found.update(str(source) for source in fact.sources)
        if fact.type == "url":
            values = fact.value.values() if isinstance(fact.value, Mapping) else [fact.value]
            found.update(str(value) for value in values)
    if secretariat_email:
        found.add(f"mailto:{secretariat_email}")
    return frozenset(found)


def segments(text: str, links: frozenset[str]) -> list[dict[str, str]]:
    """Plain text split into text parts and link parts; a link only for a known URL."""
    parts: list[dict[str, str]] = []
    spans: list[tuple[int, int, str]] = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        if url in links:
            spans.append((match.start(), match.start() + len(url), url))
    for match in _EMAIL.finditer(text):
        href = f"mailto:{match.group(0)}"
        if href in links and not any(s <= match.start() < e for s, e, _ in spans):
            spans.append((match.start(), match.end(), href))
    position = 0
    for start, end, href in sorted(spans):
        if start > position:
            parts.append({"text": text[position:start]})
        parts.append({"text": text[start:end], "href": href})
        position = end
    if position < len(text) or not parts:
        parts.append({"text": text[position:]})
    return parts


def bot_message(reply: ReplyLike, links: frozenset[str]) -> dict[str, Any]:
    """One engine reply as the JSON the page renders."""
    message: dict[str, Any] = {"parts": segments(clean(reply.text), links)}
    if reply.title:
        message["title"] = clean(reply.title)
    if reply.buttons:
        message["buttons"] = [
            {"id": button.id, "label": clean(button.label).strip() or button.id}
            for button in reply.buttons
        ]
    return message


def user_message(text: str) -> dict[str, Any]:
    """What the applicant typed, as the page shows it (never linkified)."""
    return {"parts": [{"text": clean(text)}]}


def plain(message: Mapping[str, Any]) -> str:
    """A stored message's text without its title, for comparisons."""
    return "".join(str(part.get("text", "")) for part in message.get("parts", []))


def form_field(last_bot_text: str | None, prompts: Mapping[str, str]) -> str | None:
    """The enquiry-form field the last bot message asked for (prompts: text -> field)."""
    if last_bot_text is None:
        return None
    return prompts.get(last_bot_text.strip())


def refused(
    field: str | None, replies: Sequence[Mapping[str, Any]], prompts: Mapping[str, str]
) -> str | None:
    """If a form answer was refused, the refusal text (the engine asked the same field again).

    The engine answers a refused value with the reason, then the same question; an accepted
    one moves on to another question.
    """
    if field is None or len(replies) < 2:
        return None
    if form_field(plain(replies[-1]), prompts) != field:
        return None
    return "\n".join(plain(reply) for reply in replies[:-1]).strip() or None


def field_prompts(texts: Any, fields: Iterable[str], languages: Iterable[str]) -> dict[str, str]:
    """Map each form question, in every language, to its field name."""
    prompts: dict[str, str] = {}
    for lang in languages:
        for name in fields:
            prompts[str(texts.get(lang, f"ask_{name}")).strip()] = name
    return prompts
