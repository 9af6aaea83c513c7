"""The report of a permanent delivery failure: a notice mail and the admin-chat text."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from bot.mail.compose.context import (
    _local_time,
    _moment,
)
from bot.mail.compose.headers import _header_text
from bot.mail.compose.message import _base_message, _message_id
from bot.mail.compose.templates import _environments, _render_pair

if TYPE_CHECKING:
    from bot.settings import Settings


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
