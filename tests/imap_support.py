"""A real IMAP server on loopback for the tests: mail-devel (pymap's in-memory backend).

It runs in the test's own event loop on free ports; messages are put into the mailbox with
IMAP APPEND from a second client, byte for byte, as a mail server would deliver them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aioimaplib
import trustme
from mail_devel.service import Service

USER = "bot@example.org"
PASSWORD = "imap-test-password"


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate and key (PEM files) issued by a test CA."""

    cert: Path
    key: Path
    ca: trustme.CA

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def tls_files(folder: Path) -> TlsFiles:
    """A test CA and a certificate for 127.0.0.1 and localhost."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = folder / "imap-cert.pem", folder / "imap-key.pem"
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    return TlsFiles(cert, key, ca)


@asynccontextmanager
async def tls_proxy(server: ImapServer, tls: TlsFiles) -> AsyncIterator[ImapServer]:
    """Implicit TLS (as on port 993) in front of `server`: TLS ends here, bytes go on as sent."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(server.host, server.port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    async with listener:
        port = int(listener.sockets[0].getsockname()[1])
        yield ImapServer("127.0.0.1", port)


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
    # mail-devel starts SMTP (and, with TLS, SMTPS) listener threads and never stops them.
    for controller in (service.smtp, service.smtps):
        if controller is not None:
            with contextlib.suppress(AssertionError, RuntimeError):  # it never started
                controller.stop()


@asynccontextmanager
async def imap_server(tls: TlsFiles | None = None) -> AsyncIterator[ImapServer]:
    """Start mail-devel's IMAP service on 127.0.0.1 (retrying if a port was taken meanwhile).

    With `tls`, the server offers STARTTLS with that certificate.
    """
    last_error: OSError | None = None
    for _attempt in range(5):
        imap_port, smtp_port = _free_port(), _free_port()
        args = [
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
        if tls is not None:
            # With a certificate mail-devel also starts SMTPS, on port 4465 unless told
            # otherwise: a fixed port that parallel test runs would fight over.
            args += ["--cert", str(tls.cert), "--key", str(tls.key)]
            args += ["--smtps-port", str(_free_port())]
        # mail-devel's SMTP side is an aiosmtpd Controller that gives up after 5 s when its
        # thread is slow to start, as it is on a loaded 2-core machine; give it time.
        os.environ.setdefault("AIOSMTPD_CONTROLLER_TIMEOUT", "60")
        service = await Service.init(Service.parse(args))
        if tls is not None:
            # mail-devel loads the certificate but turns pymap's STARTTLS off; turn it on.
            service.config._tls_enabled = True
        async with AsyncExitStack() as stack:
            stack.callback(_stop_smtp, service)
            try:
                await stack.enter_async_context(service.start())
            except OSError as error:  # a port taken meanwhile; TimeoutError is an OSError too
                last_error = error
                continue
            yield ImapServer("127.0.0.1", imap_port)
            # Let the server finish answering the last LOGOUT before it is torn down.
            await asyncio.sleep(0)
            return
    raise RuntimeError(f"could not start the test IMAP server: {last_error!r}")
