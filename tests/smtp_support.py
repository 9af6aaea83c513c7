"""A real aiosmtpd server on loopback (port 0) with scriptable faults, and test helpers."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from bot.settings import Settings
from bot.settings.load import settings_from_mapping
from bot.storage import dumps, to_iso


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        """The parsed message."""
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Handler:
    """Records accepted mail; replies and faults are scripted per test."""

    received: list[Received] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    drop_in_data: int = 0
    data_calls: int = 0
    logins: list[tuple[str, str]] = field(default_factory=list)
    hang: asyncio.Event | None = None
    # With `hang`: the DATA call (1-based) from which the server stalls; earlier ones pass.
    hang_from: int = 1

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        if self.hang is not None and self.data_calls >= self.hang_from:
            # A stalled server: the reply comes only when the test releases it.
            await self.hang.wait()
        if self.drop_in_data:
            self.drop_in_data -= 1
            # The client has sent the message but never hears the server's verdict.
            server.transport.abort()
            return "250 never seen"
        if self.data_replies:
            return self.data_replies.pop(0)
        content = envelope.original_content or envelope.content
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 OK queued"


class SmtpServer:
    """An aiosmtpd server on the running loop; optional STARTTLS and AUTH."""

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        port: int = 0,
        tls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        smtputf8: bool = False,
    ) -> None:
        # Offer SMTPUTF8 (RFC 6531) in the EHLO reply, for internationalised addresses.
        self.smtputf8 = smtputf8
        self.handler = handler or Handler()
        self.implicit_tls = implicit_tls
        self.connections = 0
        self.port = port
        self.tls_context = tls_context
        self.credentials = credentials
        self._server: asyncio.Server | None = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        self.handler.logins.append((login, password))
        return AuthResult(success=(login, password) == self.credentials)

    async def start(self) -> SmtpServer:
        """Listen on 127.0.0.1."""
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            self.connections += 1
            kwargs: dict[str, Any] = {
                "hostname": "localhost",
                "loop": loop,
                "enable_SMTPUTF8": self.smtputf8,
            }
            if self.tls_context is not None:
                kwargs.update(tls_context=self.tls_context, require_starttls=True)
            if self.credentials is not None:
                kwargs.update(authenticator=self._authenticate, auth_require_tls=True)
            return SMTP(self.handler, **kwargs)

        self._server = await loop.create_server(
            factory, "127.0.0.1", self.port, ssl=self.implicit_tls
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def free_port() -> int:
    """A loopback port nobody listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(tmp_path: Path, **sections: Any) -> Settings:
    """Settings with data under tmp_path; `smtp={...}` etc. override sections."""
    data: dict[str, Any] = {"data_dir": str(tmp_path / "var")}
    data["smtp"] = {"host": "127.0.0.1", "port": 25, "security": "none", "timeout": "5s"}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return settings_from_mapping(data, "test")


T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def insert_enquiry(db: Any, *, now: datetime = T0, **fields: Any) -> dict[str, Any]:
    """Insert an enquiry row directly (as the submit service would) and return it."""
    row: dict[str, Any] = {
        "channel": "telegram",
        "user_id": "1001",
        "chat_id": "1001",
        "username": "maria_rossi",
        "lang": "it",
        "name": "Maria Rossi",
        "email": "maria@example.org",
        "organisation": "Cluster Lombardo",
        "country": "Italia",
        "question": "Possiamo partecipare come consorzio?",
        "faq_history": dumps(["Qual è la scadenza?"]),
        "status": "open",
        "created_at": to_iso(now),
    }
    row.update(fields)
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    cursor = db.execute(f"INSERT INTO enquiries ({columns}) VALUES ({marks})", list(row.values()))
    enquiry_id = int(cursor.lastrowid)
    if "ref" not in fields:
        db.execute(
            "UPDATE enquiries SET ref = ? WHERE id = ?", [f"ECCP-{enquiry_id:04d}", enquiry_id]
        )
    return next(iter(db.query("SELECT * FROM enquiries WHERE id = ?", [enquiry_id])))


def queue_enquiry_mail(db: Any, settings: Settings, enquiry: dict[str, Any], now: datetime) -> int:
    """Queue the enquiry's secretariat mail as submit_enquiry does; returns the delivery id."""
    from bot.deliveries.store import enqueue
    from bot.mail.compose import enquiry_mail, mail_delivery

    with db.conn:
        return enqueue(
            db, mail_delivery(enquiry_mail(settings, enquiry), "enquiry", enquiry["id"]), now
        )


def outbox(db: Any, delivery_id: int) -> dict[str, Any]:
    """One delivery row, its mail columns also under their SMTP names (message_id, raw)."""
    row = dict(next(iter(db.query("SELECT * FROM deliveries WHERE id = ?", [delivery_id]))))
    row.update(message_id=row["idempotency_key"], raw=row["payload"], mail_from=row["sender"])
    return row


async def deliver_due(
    db: Any,
    settings: Settings,
    now: datetime,
    *,
    target: Any = None,
    tls_context: ssl.SSLContext | None = None,
    rng: Any = None,
    limit: int | None = None,
) -> Any:
    """One delivery pass of a worker whose clock says `now`, through the SMTP transport."""
    from bot.deliveries import worker as worker_module
    from bot.deliveries.smtp import SmtpTarget, SmtpTransport
    from bot.enquiries import DeliveryRules

    target = target or SmtpTarget.from_settings(settings, tls_context=tls_context)
    worker = worker_module.Worker(
        db,
        [SmtpTransport(target)],
        hook=DeliveryRules(settings),
        clock=lambda: now,
        rng=rng,
        caps={("smtp", "enquiry"): settings.enquiries.max_mails_per_hour},
    )
    if limit is not None:
        worker.claim_limit = limit
    try:
        return await worker.deliver_due()
    finally:
        worker.close()


# The chat messages of the delivery queue (Telegram, console), with their chat and text
# under the names tests read them by.
CHAT_DELIVERIES = (
    "(SELECT *, recipient AS chat_id, payload AS text, transport AS channel FROM deliveries "
    "WHERE transport != 'smtp')"
)


def audit_events(db: Any, event: str | None = None) -> list[dict[str, Any]]:
    """Audit rows, oldest first, optionally of one event."""
    if event is None:
        return list(db.query("SELECT * FROM audit ORDER BY id"))
    return list(db.query("SELECT * FROM audit WHERE event = ? ORDER BY id", [event]))
