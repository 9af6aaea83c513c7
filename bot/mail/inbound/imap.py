"""The bot's mailbox over IMAP (aioimaplib): IDLE where offered, polling otherwise.

A message is fetched by UID after the cursor (UIDVALIDITY + last UID, in SQLite) and
processed in the same transaction that moves the cursor past it, so a restart at any
moment neither skips nor repeats a message; the inbound table's unique Message-ID guards
the rest (a folder whose UIDVALIDITY changed is read again from the start).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aioimaplib

from bot.mail.inbound.process import InboundResult, process_mail
from bot.storage import to_iso, transaction, utc_now

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings import Settings

log = logging.getLogger(__name__)

# Servers may end an IDLE after 30 minutes (RFC 2177): it is re-issued before that, and a
# timeout of our own covers a connection that dies silently during IDLE.
IDLE_RENEW = timedelta(minutes=25)
IDLE_GRACE = timedelta(seconds=60)
BACKOFF_FIRST = timedelta(seconds=2)
BACKOFF_MAX = timedelta(minutes=10)
LAST_POLL = "inbox.last_poll"
LAST_ERROR = "inbox.last_error"
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS$")
_FETCH_UID = re.compile(rb"UID (\d+)")


class InboxError(Exception):
    """The mailbox cannot be used; the message is one line naming the setting at fault."""


@dataclass(frozen=True)
class FolderState:
    """What SELECT tells about the folder."""

    folder: str
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True)
class Cursor:
    """How far the bot has read a folder."""

    folder: str
    uidvalidity: int
    last_uid: int
    updated_at: str


def _where(settings: Settings) -> str:
    return f"{settings.inbox.host}:{settings.inbox.port}"


def _text(response: Any) -> str:
    lines = [bytes(line) for line in getattr(response, "lines", []) if line]
    return " ".join(line.decode("utf-8", "replace") for line in lines)[:200]


def _tls_context(settings: Settings, tls_context: ssl.SSLContext | None) -> ssl.SSLContext:
    return tls_context or ssl.create_default_context(ssl.Purpose.SERVER_AUTH)


async def _starttls(client: Any, settings: Settings, context: ssl.SSLContext) -> None:
    response = await asyncio.wait_for(
        client.protocol.execute(aioimaplib.Command("STARTTLS", client.protocol.new_tag())),
        client.timeout,
    )
    if response.result != "OK":
        raise InboxError(
            f"inbox.security: {_where(settings)} refused STARTTLS ({_text(response)}); "
            'use security = "tls" (port 993) if the server speaks implicit TLS'
        )
    protocol = client.protocol
    loop = asyncio.get_running_loop()
    protocol.transport = await loop.start_tls(
        protocol.transport, protocol, context, server_hostname=settings.inbox.host
    )
    await asyncio.wait_for(protocol.capability(), client.timeout)


async def connect(settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> Any:
    """A logged-in IMAP client; raises InboxError with one line naming the setting."""
    inbox = settings.inbox
    timeout = inbox.timeout.total_seconds()
    where = _where(settings)
    try:
        if inbox.security == "tls":
            client: Any = aioimaplib.IMAP4_SSL(
                host=inbox.host,
                port=inbox.port,
                timeout=timeout,
                ssl_context=_tls_context(settings, tls_context),
            )
        else:
            client = aioimaplib.IMAP4(host=inbox.host, port=inbox.port, timeout=timeout)
        await client.wait_hello_from_server()
        if inbox.security == "starttls":
            if not client.has_capability("STARTTLS"):
                raise InboxError(
                    f'inbox.security: {where} does not offer STARTTLS; use security = "tls"'
                )
            await _starttls(client, settings, _tls_context(settings, tls_context))
        response = await client.login(inbox.username, inbox.password)
    except InboxError:
        raise
    except ssl.SSLError as exc:
        raise InboxError(
            f"inbox.security: TLS failed with {where} ({exc.reason or exc}); "
            "check inbox.security and inbox.port"
        ) from None
    except TimeoutError:
        raise InboxError(
            f"inbox.host: no answer from {where} within {int(timeout)}s (inbox.timeout); "
            "check inbox.host, inbox.port and inbox.security"
        ) from None
    except (OSError, aioimaplib.AioImapException) as exc:
        raise InboxError(
            f"inbox.host: cannot connect to {where} ({exc}); check inbox.host and inbox.port"
        ) from None
    if response.result != "OK":
        await close(client)
        raise InboxError(
            f"inbox.username/inbox.password: login refused by {where} ({_text(response)}); "
            "check inbox.username and IMAP_PASSWORD"
        )
    return client


async def close(client: Any) -> None:
    """Log out politely; a dead connection is simply dropped."""
    try:
        await asyncio.wait_for(client.logout(), 5)
    except Exception:
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()


async def select_folder(client: Any, settings: Settings) -> FolderState:
    """SELECT the configured folder; raises InboxError when it does not exist."""
    folder = settings.inbox.folder
    response = await client.select(folder)
    if response.result != "OK":
        raise InboxError(
            f"inbox.folder: cannot open folder {folder!r} on {_where(settings)} "
            f"({_text(response)}); check the folder name"
        )
    uidvalidity = uidnext = None
    exists = 0
    for line in response.lines:
        raw = bytes(line)
        if found := _UIDVALIDITY.search(raw):
            uidvalidity = int(found.group(1))
        if found := _UIDNEXT.search(raw):
            uidnext = int(found.group(1))
        if found := _EXISTS.match(raw):
            exists = int(found.group(1))
    if uidvalidity is None:
        raise InboxError(f"inbox.folder: {_where(settings)} sent no UIDVALIDITY for {folder!r}")
    return FolderState(folder, uidvalidity, uidnext, exists)


# ---------------------------------------------------------------- cursor


def load_cursor(db: sqlite_utils.Database, folder: str) -> Cursor | None:
    """The stored cursor of `folder`, or None before the first message."""
    for row in db.query("SELECT * FROM inbox_cursor WHERE folder = ?", [folder]):
        return Cursor(row["folder"], row["uidvalidity"], row["last_uid"], row["updated_at"])
    return None


def save_cursor(
    db: sqlite_utils.Database, folder: str, uidvalidity: int, last_uid: int, now: datetime
) -> None:
    """Move the cursor (inside the caller's transaction)."""
    db.execute(
        "INSERT INTO inbox_cursor (folder, uidvalidity, last_uid, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, "
        "last_uid = excluded.last_uid, updated_at = excluded.updated_at",
        [folder, uidvalidity, last_uid, to_iso(now)],
    )


def _start_after(cursor: Cursor | None, state: FolderState) -> int:
    if cursor is None or cursor.uidvalidity != state.uidvalidity:
        # A new folder (or one re-created): read it all; Message-IDs already seen are skipped.
        return 0
    return cursor.last_uid


async def _new_uids(client: Any, after: int) -> list[int]:
    response = await client.uid_search(f"UID {after + 1}:*", charset=None)
    if response.result != "OK":
        raise InboxError(f"inbox.folder: UID SEARCH failed ({_text(response)})")
    uids: list[int] = []
    for line in response.lines[:-1]:
        uids.extend(int(part) for part in bytes(line).split() if part.isdigit())
    # "N:*" always matches the last message, even when its UID is below N.
    return sorted(uid for uid in set(uids) if uid > after)


async def _fetch_raw(client: Any, uid: int) -> bytes | None:
    response = await client.uid("fetch", str(uid), "(UID BODY.PEEK[])")
    if response.result != "OK":
        raise InboxError(f"inbox.folder: UID FETCH {uid} failed ({_text(response)})")
    lines = response.lines
    for index, line in enumerate(lines):
        if isinstance(line, bytearray):
            header = bytes(lines[index - 1]) if index else b""
            found = _FETCH_UID.search(header)
            if found is None or int(found.group(1)) == uid:
                return bytes(line)
    return None


@dataclass
class InboxWatcher:
    """Reads new mail from the bot's mailbox and feeds it to the inbound pipeline."""

    db: sqlite_utils.Database
    settings: Settings
    clock: Callable[[], datetime] = utc_now
    on_result: Callable[[InboundResult], None] | None = None
    tls_context: ssl.SSLContext | None = None
    idle_renew: timedelta = IDLE_RENEW

    async def read_new(self, client: Any, state: FolderState) -> list[InboundResult]:
        """Process every message after the cursor, one transaction each, in UID order."""
        from bot.storage import set_meta

        results = []
        after = _start_after(load_cursor(self.db, state.folder), state)
        for uid in await _new_uids(client, after):
            raw = await _fetch_raw(client, uid)
            now = self.clock()
            with transaction(self.db):
                if raw is not None:
                    result = process_mail(
                        self.db, self.settings, raw, source=f"imap:{state.folder}:{uid}", now=now
                    )
                    results.append(result)
                save_cursor(self.db, state.folder, state.uidvalidity, uid, now)
            if raw is not None and self.on_result is not None:
                self.on_result(results[-1])
        with transaction(self.db):
            set_meta(self.db, LAST_POLL, to_iso(self.clock()))
            self.db.execute("DELETE FROM meta WHERE key = ?", [LAST_ERROR])
        return results

    async def poll_once(self) -> list[InboundResult]:
        """Connect, read what is new, log out (for the CLI and tests)."""
        client = await connect(self.settings, tls_context=self.tls_context)
        try:
            state = await select_folder(client, self.settings)
            return await self.read_new(client, state)
        finally:
            await close(client)

    async def _wait_for_mail(self, client: Any) -> None:
        """IDLE until the server reports a change or it is time to renew; else poll later."""
        if not client.has_capability("IDLE"):
            await asyncio.sleep(self.settings.inbox.poll_every.total_seconds())
            response = await client.noop()
            if response.result != "OK":
                raise InboxError(f"inbox.host: NOOP failed ({_text(response)})")
            return
        renew = self.idle_renew.total_seconds()
        idle = await client.idle_start(timeout=renew)
        try:
            # Our own bound: a connection dropped silently during IDLE must not hang us.
            await asyncio.wait_for(client.wait_server_push(timeout=renew), renew + 60)
        except TimeoutError:
            pass
        finally:
            client.idle_done()
        await asyncio.wait_for(idle, self.settings.inbox.timeout.total_seconds())

    def _record_error(self, message: str) -> None:
        from bot.storage import set_meta

        try:
            with transaction(self.db):
                set_meta(self.db, LAST_ERROR, f"{to_iso(self.clock())} {message}")
        except Exception:
            log.exception("cannot record the inbox error")

    async def run(self) -> None:
        """Watch the mailbox until cancelled, reconnecting with backoff after any failure."""
        backoff = BACKOFF_FIRST
        while True:
            client = None
            try:
                client = await connect(self.settings, tls_context=self.tls_context)
                state = await select_folder(client, self.settings)
                backoff = BACKOFF_FIRST
                while True:
                    await self.read_new(client, state)
                    await self._wait_for_mail(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                message = str(exc) if isinstance(exc, InboxError) else f"{type(exc).__name__}"
                log.warning("inbox: %s; reconnecting in %ss", message, int(backoff.total_seconds()))
                self._record_error(message)
            finally:
                if client is not None:
                    await close(client)
            await asyncio.sleep(backoff.total_seconds())
            backoff = min(backoff * 2, BACKOFF_MAX)


def inbox_status(db: sqlite_utils.Database, settings: Settings) -> dict[str, Any]:
    """The cursor, the last poll and error, and the messages not relayed, for the operator."""
    from bot.storage import get_meta

    cursor = load_cursor(db, settings.inbox.folder)
    counts = {
        str(row["status"]): int(row["n"])
        for row in db.query("SELECT status, COUNT(*) AS n FROM inbound_mail GROUP BY status")
    }
    pending = list(
        db.query(
            "SELECT i.id, i.received_at, i.status, i.reason, i.sender, i.subject, e.ref "
            "FROM inbound_mail i LEFT JOIN enquiries e ON e.id = i.enquiry_id "
            "WHERE i.status IN ('unmatched', 'refused') ORDER BY i.id DESC LIMIT 50"
        )
    )
    return {
        "configured": settings.inbox.configured,
        "folder": settings.inbox.folder,
        "cursor": None
        if cursor is None
        else {
            "uidvalidity": cursor.uidvalidity,
            "last_uid": cursor.last_uid,
            "updated_at": cursor.updated_at,
        },
        "last_poll": get_meta(db, LAST_POLL),
        "last_error": get_meta(db, LAST_ERROR),
        "counts": counts,
        "not_relayed": pending,
    }


async def probe_imap(
    settings: Settings, *, tls_context: ssl.SSLContext | None = None
) -> tuple[list[str], str]:
    """For `clusterbot check --imap`: log in, open the folder; (problems, a summary line)."""
    if not settings.inbox.configured:
        return ["inbox.host: not set; --imap needs an [inbox] section with host"], ""
    try:
        client = await connect(settings, tls_context=tls_context)
    except InboxError as exc:
        return [str(exc)], ""
    try:
        state = await select_folder(client, settings)
        idle = "IDLE" if client.has_capability("IDLE") else "no IDLE: polling"
    except InboxError as exc:
        return [str(exc)], ""
    except (TimeoutError, OSError, aioimaplib.AioImapException) as exc:
        return [f"inbox.host: {_where(settings)} failed during SELECT ({exc})"], ""
    finally:
        await close(client)
    return [], (
        f"IMAP OK: {settings.inbox.username}@{_where(settings)}, folder {state.folder!r}: "
        f"{state.exists} messages, UIDVALIDITY {state.uidvalidity} ({idle})"
    )
