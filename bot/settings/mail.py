"""[smtp], [secretariat] and [inbox]: how mail leaves, who receives it and may answer,
and the bot's own mailbox where the answers arrive."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bot.settings.durations import PositiveDuration
from bot.settings.section import Language, Section

# `[smtp] host = "embedded"`: keep every mail as a local .eml file, on purpose.
EMBEDDED_SMTP = "embedded"
_PLAIN_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")
_DOMAIN = re.compile(r"@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


class SmtpSettings(Section):
    host: str = ""
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: str = ""
    sender: str = "Cluster call bot <noreply@example.org>"
    timeout: PositiveDuration = timedelta(seconds=30)

    @property
    def embedded(self) -> bool:
        """True when mail goes to the embedded local store (.eml files), not a server."""
        return self.host.strip() in ("", EMBEDDED_SMTP)

    @field_validator("sender")
    @classmethod
    def _sender_address(cls, value: str) -> str:
        from email.headerregistry import Address
        from email.utils import parseaddr

        if "\r" in value or "\n" in value:
            raise ValueError("must be one line")
        _, addr = parseaddr(value)
        try:
            Address(addr_spec=addr)
        except (ValueError, IndexError):
            raise ValueError(
                f"must be an address like 'Bot <noreply@example.org>', got {value!r}"
            ) from None
        if "@" not in addr:
            raise ValueError(f"must be an address like 'Bot <noreply@example.org>', got {value!r}")
        return value


class SecretariatSettings(Section):
    email: str = "segreteria@example.org"
    language: Language = "it"
    # Who may answer enquiries by e-mail: addresses or '@domains' (secretariat.email always).
    answer_from: tuple[str, ...] = ()

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _PLAIN_ADDRESS.fullmatch(value):
            raise ValueError(f"must be one e-mail address like 'info@example.org', got {value!r}")
        return value

    @field_validator("answer_from")
    @classmethod
    def _answer_from(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = []
        for value in values:
            item = value.strip().lower()
            if not (_DOMAIN.fullmatch(item) or _PLAIN_ADDRESS.fullmatch(item)):
                raise ValueError(
                    "each entry must be an address like 'anna@example.org' or a domain like "
                    f"'@example.org', got {value!r}"
                )
            cleaned.append(item)
        return tuple(cleaned)


class InboxSettings(Section):
    """The bot's own mailbox, where the secretariat's e-mail replies arrive (IMAP)."""

    host: str = ""
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = ""
    password: str = ""
    folder: str = "INBOX"
    reply_address: str = ""
    poll_every: PositiveDuration = timedelta(seconds=60)
    timeout: PositiveDuration = timedelta(seconds=30)

    @field_validator("reply_address")
    @classmethod
    def _reply_address(cls, value: str) -> str:
        value = value.strip()
        if value and (not _PLAIN_ADDRESS.fullmatch(value) or "+" in value.split("@")[0]):
            raise ValueError(
                "must be the bot's plain address like 'bot@example.org' (no '+': the bot adds "
                f"'+REF.token' itself), got {value!r}"
            )
        return value

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value or not value.isprintable() or '"' in value or "\\" in value:
            raise ValueError(f"must be a mailbox name such as 'INBOX', got {value!r}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> InboxSettings:
        if self.host:
            missing = [k for k in ("username", "reply_address") if not getattr(self, k)]
            if missing:
                raise ValueError(
                    f"with inbox.host set, inbox.{' and inbox.'.join(missing)} must be set too"
                )
        return self

    @property
    def configured(self) -> bool:
        """True when a real IMAP mailbox receives the replies."""
        return bool(self.host)
