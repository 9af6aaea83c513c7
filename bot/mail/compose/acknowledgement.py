"""The confirmation to the applicant that their enquiry reached the secretariat."""

from __future__ import annotations

from collections.abc import Mapping
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from bot.mail.compose.context import (
    LANGUAGES,
    _enquiry_context,
    _local_time,
    _moment,
)
from bot.mail.compose.headers import _address, _fixed, _header_text
from bot.mail.compose.message import _base_message, _message_id
from bot.mail.compose.templates import _render_pair

if TYPE_CHECKING:
    from bot.settings import Settings


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
