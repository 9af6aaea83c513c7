"""A composed mail as a delivery row: its exact bytes, sender, recipients and Message-ID."""

from __future__ import annotations

from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any

from bot.deliveries.model import NewDelivery
from bot.mail.compose.headers import SMTP_POLICY, SMTP_UTF8_POLICY, ComposeError
from bot.storage import dumps

if TYPE_CHECKING:
    pass


KINDS = (
    "enquiry",
    "reminder",
    "reminders",
    "digest",
    "failure",
    "acknowledgement",
    "answer",
    "follow_up",
)


def mail_delivery(message: EmailMessage, kind: str, enquiry_id: int | None) -> NewDelivery:
    """The delivery of `message`: its raw bytes and Message-ID (the key) are fixed here."""
    if kind not in KINDS:
        raise ValueError(f"unknown mail kind {kind!r}")
    message_id = message["Message-ID"]
    if not message_id:
        raise ComposeError("the message has no Message-ID")
    senders = _addr_specs(message.get_all("From", []))
    mail_from = senders[0] if senders else ""
    recipients = _addr_specs(
        value for header in ("To", "Cc", "Bcc") for value in message.get_all(header, [])
    )
    if not mail_from or not recipients:
        raise ComposeError("the message needs a From and at least one recipient")
    # Bcc must never travel in the message itself.
    del message["Bcc"]
    # Serialised once, here; the bytes are stored and sent as they are, never re-parsed.
    raw = message_bytes(message)
    return NewDelivery(
        transport="smtp",
        kind=kind,
        recipient=dumps(recipients),
        payload=raw,
        idempotency_key=str(message_id),
        enquiry_id=enquiry_id,
        sender=mail_from,
    )


def needs_utf8(message: EmailMessage) -> bool:
    """Whether an address in the message has non-ASCII letters (it must travel SMTPUTF8)."""
    headers = ("From", "To", "Cc", "Reply-To")
    specs = _addr_specs(value for name in headers for value in message.get_all(name, []))
    return not all(spec.isascii() for spec in specs)


def message_bytes(message: EmailMessage) -> bytes:
    """The message as sent: 7-bit clean, or with UTF-8 headers (RFC 6532) when an address
    needs them (such a mail is sent with the SMTPUTF8 option)."""
    return message.as_bytes(policy=SMTP_UTF8_POLICY if needs_utf8(message) else SMTP_POLICY)


def _addr_specs(values: Iterable[Any]) -> list[str]:
    """The plain addresses in address headers, reusing the header objects' parse."""
    specs: list[str] = []
    for value in values:
        addresses = getattr(value, "addresses", None)
        if addresses is None:
            specs.extend(addr for _, addr in getaddresses([str(value)]) if addr)
        else:
            specs.extend(address.addr_spec for address in addresses if address.addr_spec)
    return specs
