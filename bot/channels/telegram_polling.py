"""Long polling: fetch updates, journal them, then confirm them by asking for the next offset.

The offset of a batch is confirmed (the next getUpdates call) only after `receive` committed
it to the journal, so a crash between the two makes Telegram send the batch again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from telegram import Bot
from telegram.error import (
    EndPointNotFound,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBUserWarning

from bot.channels.telegram_limits import retry_after_seconds
from bot.channels.telegram_updates import ALLOWED_UPDATES
from bot.logs import network_cause
from bot.storage import DatabaseFileLost

log = logging.getLogger(__name__)

# Long-poll length; the HTTP read timeout is a little longer.
POLL_TIMEOUT = 25
POLL_READ_MARGIN = 10
POLL_BACKOFF_MAX = 5.0


class Poller:
    """getUpdates in a loop until `stop` is set; each batch goes to `receive` first."""

    def __init__(
        self,
        bot: Bot,
        receive: Callable[[Sequence[dict[str, Any]]], Awaitable[None]],
        stop: asyncio.Event,
    ) -> None:
        self.bot = bot
        self.receive = receive
        self.stop = stop
        # getUpdates is fetched as JSON (journaled verbatim, parsed once, later) through
        # Bot.do_api_request, which suggests Bot.get_updates for it: that one would parse
        # every update at once, and a single malformed one would stop polling for good.
        warnings.filterwarnings(
            "ignore", message=r"Please use 'Bot\.getUpdates'", category=PTBUserWarning
        )

    async def poll(self) -> None:
        """Long polling: fetch, journal, then confirm (by asking for the next offset)."""
        offset: int | None = None
        failures = 0
        while not self.stop.is_set():
            try:
                updates = await self._fetch(offset)
            except asyncio.CancelledError:
                raise
            except (InvalidToken, EndPointNotFound):
                # After getMe succeeded a refused token shows as "endpoint not found".
                log.error("Telegram refused the bot token; stopping")
                self.stop.set()
                raise
            except TelegramError as exc:
                failures += 1
                delay = min(POLL_BACKOFF_MAX, 0.5 * 2**failures)
                if isinstance(exc, RetryAfter):
                    delay = retry_after_seconds(exc)
                cause = network_cause(exc) if isinstance(exc, NetworkError) else type(exc).__name__
                log.warning("getUpdates failed (%s); retrying in %.1fs", cause, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                continue
            failures = 0
            if not updates:
                continue
            try:
                await self.receive(updates)
            except DatabaseFileLost:
                # The app has said so in one line and is stopping; the updates stay with
                # Telegram (offset not confirmed) for the restored bot.
                return
            except Exception as exc:
                # Not journaled: do not confirm the offset; Telegram sends them again.
                log.error("journaling updates failed (%s); fetching them again", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), POLL_BACKOFF_MAX)
                continue
            offset = int(updates[-1]["update_id"]) + 1

    async def _fetch(self, offset: int | None) -> list[dict[str, Any]]:
        """getUpdates as Telegram's JSON: journaled verbatim, parsed once, later."""
        data: dict[str, Any] = {
            "timeout": POLL_TIMEOUT,
            "allowed_updates": list(ALLOWED_UPDATES),
        }
        if offset is not None:
            data["offset"] = offset
        result = await self.bot.do_api_request(
            "getUpdates", api_kwargs=data, read_timeout=POLL_TIMEOUT + POLL_READ_MARGIN
        )
        if not isinstance(result, list):
            return []
        return [u for u in result if isinstance(u, dict) and isinstance(u.get("update_id"), int)]
