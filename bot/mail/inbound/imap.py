"""The bot's mailbox over IMAP (aioimaplib): connect and log in, select the folder, find
and fetch new messages by UID, and the login probe of `clusterbot check --imap`.

The reader that uses them is watcher.py; where it stands in the folder is cursor.py.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aioimaplib

if TYPE_CHECKING:
    from bot.settings import Settings

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


def _where(settings: Settings) -> str:
    return f"{settings.inbox.host}:{settings.inbox.port}"


def reply_text(response: Any) -> str:
    """The server's answer, on one line, for an error message."""
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
            f"inbox.security: {_where(settings)} refused STARTTLS ({reply_text(response)}); "
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
            f"inbox.username/inbox.password: login refused by {where} ({reply_text(response)}); "
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
            f"({reply_text(response)}); check the folder name"
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


async def new_uids(client: Any, after: int) -> list[int]:
    """The UIDs in the selected folder after `after`, ascending."""
    response = await client.uid_search(f"UID {after + 1}:*", charset=None)
    if response.result != "OK":
        raise InboxError(f"inbox.folder: UID SEARCH failed ({reply_text(response)})")
    uids: list[int] = []
    for line in response.lines[:-1]:
        uids.extend(int(part) for part in bytes(line).split() if part.isdigit())
    # "N:*" always matches the last message, even when its UID is below N.
    return sorted(uid for uid in set(uids) if uid > after)


async def fetch_raw(client: Any, uid: int) -> bytes | None:
    """The raw message of `uid` (None when the server sends none), left unread."""
    response = await client.uid("fetch", str(uid), "(UID BODY.PEEK[])")
    if response.result != "OK":
        raise InboxError(f"inbox.folder: UID FETCH {uid} failed ({reply_text(response)})")
    lines = response.lines
    for index, line in enumerate(lines):
        if isinstance(line, bytearray):
            header = bytes(lines[index - 1]) if index else b""
            found = _FETCH_UID.search(header)
            if found is None or int(found.group(1)) == uid:
                return bytes(line)
    return None


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
