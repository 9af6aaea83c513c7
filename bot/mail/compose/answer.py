"""The secretariat's answer to the applicant, and the applicant's follow-up to the secretariat."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from bot.mail.compose.context import (
    LANGUAGES,
    _enquiry_context,
    _local_time,
    _moment,
)
from bot.mail.compose.headers import _address, _header_text
from bot.mail.compose.message import _base_message, _message_id, _reply_to, _thread_under
from bot.mail.compose.templates import _render_pair

if TYPE_CHECKING:
    from bot.settings import Settings


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
    _thread_under(message, original_message_id)
    message["X-Clusterbot-Ref"] = context["ref"]
    message["X-Clusterbot-Kind"] = "follow_up"
    return message
