"""The inbox reader: IDLE where offered, polling otherwise, reconnecting with backoff.

A message is fetched by UID after the cursor (UIDVALIDITY + last UID, in SQLite) and
processed in the same transaction that moves the cursor past it, so a restart at any
moment neither skips nor repeats a message; the inbound table's unique Message-ID guards
the rest (a folder whose UIDVALIDITY changed is read again from the start).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.mail.inbound.cursor import LAST_ERROR, LAST_POLL, load_cursor, save_cursor, start_after
from bot.mail.inbound.imap import (
    FolderState,
    InboxError,
    close,
    connect,
    fetch_raw,
    new_uids,
    reply_text,
    select_folder,
)
from bot.mail.inbound.process import InboundResult, process_mail
from bot.storage import set_meta, to_iso, transaction, utc_now

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
        results = []
        after = start_after(load_cursor(self.db, state.folder), state)
        for uid in await new_uids(client, after):
            raw = await fetch_raw(client, uid)
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
                raise InboxError(f"inbox.host: NOOP failed ({reply_text(response)})")
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
