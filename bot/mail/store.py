"""The embedded mail store: an aiosmtpd server on loopback that saves each mail as .eml."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Loopback only: the store accepts any mail without authentication.
LOOPBACK = "127.0.0.1"
# Generous, but bounded: the store writes what it receives to disk.
DATA_SIZE_LIMIT = 10 * 1024 * 1024
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
PRIVATE_FILE_MODE = 0o600


class _Handler:
    """aiosmtpd handler: write each message to the folder, then report its path."""

    def __init__(self, store: MailStore) -> None:
        self._store = store

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else str(content).encode("utf-8")
        try:
            path = await asyncio.to_thread(self._store.write, data)
        except OSError as exc:
            log.error("mail store: cannot write to %s: %s", self._store.directory, exc)
            return "451 4.3.0 cannot store the message now"
        self._store.stored.append(path)
        if self._store.report is not None:
            self._store.report(path)
        return "250 2.0.0 OK stored"


class MailStore:
    """Start/stop an SMTP server on loopback (port 0 by default) that stores mail as .eml."""

    def __init__(
        self,
        directory: Path,
        *,
        report: Callable[[Path], None] | None = None,
        host: str = LOOPBACK,
        port: int = 0,
    ) -> None:
        self.directory = directory
        self.report = report
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self.stored: list[Path] = []

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the server listens on (known after start)."""
        return self._port

    async def start(self) -> tuple[str, int]:
        """Listen on loopback; returns (host, port)."""
        from aiosmtpd.smtp import SMTP

        if self._server is not None:
            return self._host, self._port
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # aiosmtpd logs every envelope address at INFO; keep those out of our logs.
        quiet = logging.getLogger("mail.log")
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        handler = _Handler(self)

        def factory() -> Any:
            return SMTP(
                handler,
                hostname="localhost",
                data_size_limit=DATA_SIZE_LIMIT,
                enable_SMTPUTF8=True,
                loop=loop,
            )

        self._server = await loop.create_server(factory, self._host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("mail store on %s:%d writes to %s", self._host, self._port, self.directory)
        return self._host, self._port

    async def stop(self) -> None:
        """Stop listening."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> MailStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def write(self, data: bytes) -> Path:
        """Save one message; the name comes from its Message-ID, so a resend overwrites it."""
        headers = BytesHeaderParser(policy=default_policy).parsebytes(data)
        message_id = str(headers.get("Message-ID", "")).strip()
        words = [
            str(headers.get(name, "")).strip() for name in ("X-Clusterbot-Ref", "X-Clusterbot-Kind")
        ]
        digest = hashlib.sha256((message_id or data.decode("latin-1")).encode()).hexdigest()[:16]
        prefix = "-".join(word for word in words if _SAFE_WORD.match(word)) or "mail"
        path = self.directory / f"{prefix}-{digest}.eml"
        temporary = path.with_suffix(".eml.tmp")
        # LF line ends: what mail readers and text tools expect of a .eml file on disk.
        text = data.replace(b"\r\n", b"\n")
        # 0600 whatever the umask: the mail holds applicants' personal data.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return path


def erase_stored_mail(directory: Path, refs: Iterable[str]) -> int:
    """Delete the stored mail of these enquiries (named after their reference); returns how many.

    The store's files are copies of personal data like any other: /forget and retention
    erase them with the database rows.
    """
    count = 0
    for ref in set(refs):
        if not _SAFE_WORD.match(ref):
            continue
        # The hyphen after the reference keeps 'ECCP-0001' from matching 'ECCP-00010'.
        for path in directory.glob(f"{ref}-*.eml"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                count += 1
    if count:
        log.info("mail store: erased %d stored %s", count, "mail" if count == 1 else "mails")
    return count


def expire_stored_mail(directory: Path, older_than: datetime) -> int:
    """Delete stored mail (digests included) written before `older_than`; returns how many."""
    cutoff = older_than.timestamp()
    count = 0
    if not directory.is_dir():
        return 0
    for path in directory.glob("*.eml"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                count += 1
    if count:
        log.info("retention: erased %d stored %s", count, "mail" if count == 1 else "mails")
    return count
