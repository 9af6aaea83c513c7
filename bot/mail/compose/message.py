"""What every mail shares: the multipart/alternative skeleton, Message-ID and Reply-To."""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from typing import TYPE_CHECKING, Any

from bot.mail.compose.headers import POLICY, _address, _fixed, _header_text, _sender

if TYPE_CHECKING:
    from bot.settings import Settings


_IDSTRING = re.compile(r"^[A-Za-z0-9-]{1,40}$")


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


def _reply_to(context: Mapping[str, Any], bot_address: str | None) -> Address:
    """The bot's per-enquiry address when an inbox reads replies, else the applicant."""
    if bot_address:
        return _address("", bot_address, "inbox.reply_address")
    return _address(context["name"], context["email"], "applicant", international=True)


def _thread_under(message: EmailMessage, original_message_id: str | None) -> None:
    """Thread a mail under the enquiry's original mail (In-Reply-To and References)."""
    if original_message_id:
        original = _header_text(original_message_id, "original Message-ID")
        message["In-Reply-To"] = original
        message["References"] = original
