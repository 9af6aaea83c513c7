"""The SMTP transport: mail built to exact bytes (bot.mail.compose), sent as stored.

A retry sends the same bytes with the same Message-ID; one connection is kept open while
the worker has mail for it, and closed when it goes idle.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import aiosmtplib

from bot.deliveries.lookups import recipients
from bot.deliveries.model import Dead, Delivery, Outcome, Retry, Sent
from bot.deliveries.sql import UNREACHABLE, short

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)

NAME = "smtp"

Security = Literal["starttls", "tls", "none"]


def count_mails(count: int) -> str:
    """'1 e-mail', '3 e-mails'."""
    return f"{count} e-mail" if count == 1 else f"{count} e-mails"


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect: from settings, or the embedded mail store."""

    hostname: str
    port: int
    security: Security
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    tls_context: ssl.SSLContext | None = None
    local_hostname: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        hostname: str | None = None,
        port: int | None = None,
        security: Security | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> SmtpTarget:
        """The target named by settings.smtp, with optional overrides (the embedded store)."""
        smtp = settings.smtp
        return cls(
            hostname=hostname if hostname is not None else smtp.host,
            port=port if port is not None else smtp.port,
            security=security if security is not None else smtp.security,
            username=smtp.username if hostname is None else "",
            password=smtp.password if hostname is None else "",
            timeout=smtp.timeout.total_seconds(),
            tls_context=tls_context,
            local_hostname="localhost" if hostname is not None else None,
        )


_fqdn: str | None = None


async def _local_hostname() -> str:
    """This host's name for EHLO, looked up once (getfqdn may do a slow DNS query)."""
    global _fqdn
    if _fqdn is None:
        _fqdn = await asyncio.to_thread(socket.getfqdn)
    return _fqdn


async def connect(target: SmtpTarget) -> aiosmtplib.SMTP:
    """Open an SMTP session per target.security and log in; raise on any failure.

    aiosmtplib does STARTTLS and the login itself: start_tls=True refuses a server that does
    not offer STARTTLS instead of going on in clear.
    """
    client = aiosmtplib.SMTP(
        hostname=target.hostname or "localhost",
        port=target.port,
        timeout=target.timeout,
        use_tls=target.security == "tls",
        start_tls=target.security == "starttls",
        validate_certs=True,
        tls_context=target.tls_context,
        username=target.username or None,
        password=target.password or None,
        local_hostname=target.local_hostname or await _local_hostname(),
    )
    await client.connect()
    return client


def describe_smtp(settings: Settings, problems: Sequence[str] | None = None) -> str:
    """One line saying where mail goes, for `clusterbot check`.

    `problems` are probe_smtp's findings: [] means the probe succeeded, None that no probe
    was made (the line then only names the server).
    """
    smtp = settings.smtp
    if smtp.embedded:
        why = "smtp.host is 'embedded'" if smtp.host.strip() else "smtp.host is empty"
        return (
            f"SMTP: embedded mail store ({why}: mails are saved as .eml files "
            f"under {_display_path(settings.mail_dir)}, not sent)"
        )
    where = f"{smtp.host}:{smtp.port} (security {smtp.security})"
    action = "login to" if smtp.username else "connection to"
    if problems is None:
        login = f", login as {smtp.username!r}" if smtp.username else ", no login"
        return f"SMTP: {where}{login}; not probed (use --smtp)"
    if problems:
        return f"SMTP: {action} {where} FAILED"
    return f"SMTP: {action} {where} OK"


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


async def probe_smtp(settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> list[str]:
    """Connect (and log in) to the configured SMTP server; returns the problems found.

    With the embedded store there is nothing to probe: no problem.
    """
    if settings.smtp.embedded:
        return []
    target = SmtpTarget.from_settings(settings, tls_context=tls_context)
    try:
        client = await connect(target)
    except Exception as exc:
        reason = short(str(exc)) or type(exc).__name__
        return [
            f"smtp: cannot connect and log in to {target.hostname}:{target.port} "
            f"(security {target.security}): {reason}"
        ]
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
    return []


def _response_text(code: int, message: str) -> str:
    return short(f"{code} {message}")


def status_code(text: str) -> str:
    """The reply code and enhanced status only (e.g. '550 5.1.1'): safe for logs."""
    match = re.match(r"^(\d{3})(?:\s+(\d\.\d{1,3}\.\d{1,3}))?", text)
    if not match:
        return "no reply code"
    return " ".join(part for part in match.groups() if part)


def classify(exc: BaseException) -> tuple[bool, bool, str]:
    """(permanent, connection_lost, error text) for an exception raised while sending."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [err.code for err in exc.recipients]
        text = "; ".join(
            _response_text(err.code, f"{err.message} ({err.recipient})") for err in exc.recipients
        )
        return all(code >= 500 for code in codes), False, short(f"recipients refused: {text}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if not 400 <= exc.code <= 599:
            # A garbled or unexpected reply: the session cannot be trusted, start afresh.
            return False, True, short(f"unexpected reply: {exc.code} {exc.message}")
        # 421 means the server is closing the connection: temporary, and reconnect.
        return exc.code >= 500, exc.code == 421, _response_text(exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return False, True, short(f"timeout: {exc}")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError | OSError):
        return False, True, short(f"connection lost: {exc}")
    if isinstance(exc, ValueError):
        return True, False, short(f"invalid message or address: {exc}")
    return False, True, short(f"{type(exc).__name__}: {exc}")


class SmtpTransport:
    """Sends mail deliveries over one reused SMTP session."""

    name = NAME

    def __init__(
        self, target: SmtpTarget, on_connect: Callable[[bool], None] | None = None
    ) -> None:
        self.target = target
        self._client: aiosmtplib.SMTP | None = None
        # Told, at each new session, whether the server offers SMTPUTF8 (bot.mail.smtputf8).
        self.on_connect = on_connect

    @property
    def connected(self) -> bool:
        """A session is open (the next send does not need to connect first)."""
        return self._client is not None and self._client.is_connected

    async def send(self, delivery: Delivery) -> Outcome:
        """Send the stored bytes to the stored envelope; classify any failure."""
        raw = delivery.payload
        if not raw:
            return Dead("the stored message is empty (erased?)")
        data = raw if isinstance(raw, bytes) else raw.encode()
        client = self._client
        if client is None or not client.is_connected:
            try:
                client = self._client = await connect(self.target)
                if self.on_connect is not None:
                    if client.last_ehlo_response is None:
                        await client.ehlo()
                    self.on_connect(client.supports_extension("smtputf8"))
            except Exception as exc:
                self._client = None
                reason = short(str(exc)) or type(exc).__name__
                target = self.target
                return Retry(
                    f"{UNREACHABLE} to {target.hostname}:{target.port}: {reason}",
                    unreachable=True,
                )
        envelope = recipients(delivery)
        # An internationalised address (RFC 6531) travels only with SMTPUTF8.
        utf8 = not data.isascii() or not all(
            a.isascii() for a in [delivery.sender or "", *envelope]
        )
        if utf8 and client.last_ehlo_response is None:
            try:
                await client.ehlo()
            except Exception as exc:
                client.close()
                self._client = None
                return Retry(short(f"EHLO failed: {exc}"))
        if utf8 and not client.supports_extension("smtputf8"):
            return Dead(
                "the mail server does not offer SMTPUTF8, needed for an address with "
                "non-ASCII letters",
                recipient_refused=True,
            )
        try:
            refused, _ = await client.sendmail(
                delivery.sender or "", envelope, data, mail_options=["SMTPUTF8"] if utf8 else None
            )
        except Exception as exc:
            permanent, lost, error = classify(exc)
            if lost:
                client.close()
                self._client = None
            if permanent:
                refused_rcpt = isinstance(
                    exc, aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPSenderRefused
                )
                return Dead(error, recipient_refused=refused_rcpt)
            return Retry(error)
        if refused:
            note = short(
                "accepted, but refused for: "
                + "; ".join(f"{rcpt}: {resp.code} {resp.message}" for rcpt, resp in refused.items())
            )
            return Sent(refused=note)
        return Sent()

    def status(self, error: str) -> str:
        """What of an error may go to the log (the reply code, not the addresses)."""
        return status_code(error)

    async def idle(self) -> None:
        """Say goodbye to the server (or just drop a broken session)."""
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    def abort(self) -> None:
        """Cancelled (shutdown): drop the session without waiting for a reply."""
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            client.close()
