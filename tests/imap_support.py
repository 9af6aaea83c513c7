"""A real IMAP server on loopback for the tests: mail-devel (pymap's in-memory backend).

It runs in the test's own event loop on free ports; messages are put into the mailbox with
IMAP APPEND from a second client, byte for byte, as a mail server would deliver them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import aioimaplib
from mail_devel.service import Service

USER = "bot@example.org"
PASSWORD = "imap-test-password"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ImapServer:
    """Where the test IMAP server listens, and a way to deliver mail into it."""

    host: str
    port: int

    async def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """APPEND one message, as the mail server would on delivery."""
        client = aioimaplib.IMAP4(host=self.host, port=self.port, timeout=30)
        await client.wait_hello_from_server()
        assert (await client.login(USER, PASSWORD)).result == "OK"
        response = await client.append(raw, mailbox=folder)
        assert response.result == "OK", response
        await client.logout()


def _stop_smtp(service: Service) -> None:
    # mail-devel starts an SMTP listener thread as well and never stops it itself.
    if service.smtp is not None:
        with contextlib.suppress(AssertionError, RuntimeError):  # it never started
            service.smtp.stop()


@asynccontextmanager
async def imap_server() -> AsyncIterator[ImapServer]:
    """Start mail-devel's IMAP service on 127.0.0.1 (retrying if a port was taken meanwhile)."""
    for _attempt in range(5):
        imap_port, smtp_port = _free_port(), _free_port()
        args = Service.parse(
            [
                "--host",
                "127.0.0.1",
                "--imap-port",
                str(imap_port),
                "--smtp-port",
                str(smtp_port),
                "--no-http",
                "--user",
                USER,
                "--password",
                PASSWORD,
            ]
        )
        service = await Service.init(args)
        async with AsyncExitStack() as stack:
            stack.callback(_stop_smtp, service)
            try:
                await stack.enter_async_context(service.start())
            except OSError:
                continue
            yield ImapServer("127.0.0.1", imap_port)
            # Let the server finish answering the last LOGOUT before it is torn down.
            await asyncio.sleep(0)
            return
    raise RuntimeError("could not start the test IMAP server")
