"""The e-mail that forwards an enquiry to the secretariat."""

from __future__ import annotations

from collections.abc import Mapping
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from bot.mail.compose.context import (
    HEADER_KEYS,
    _enquiry_context,
    _moment,
)
from bot.mail.compose.headers import _header_text
from bot.mail.compose.message import _base_message, _message_id, _reply_to
from bot.mail.compose.templates import _render_pair

if TYPE_CHECKING:
    from bot.settings import Settings


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
