"""Flood control for outgoing Telegram requests, with retries: nothing is dropped.

The pace comes from aiolimiter (the leaky bucket PTB's own AIORateLimiter uses) and from
the settings: `[telegram] max_messages_per_second` overall and
`max_messages_per_chat_per_second` per private chat (0 switches either off), plus
Telegram's 20 messages a minute per group. PTB's AIORateLimiter is not used as is: it has
no per-chat pace for private chats, pauses every chat on one 429 and never retries 5xx or
timeouts. This limiter waits `retry_after` on 429 for that chat only (one user's flood
never delays the others; a request without a chat pauses only its own method), and
retries 5xx, network errors and timeouts with exponential backoff. Cosmetic requests
(typing, a button's answer) are retried at most once and never wait long, so they cannot
hold up the reply that follows them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from aiolimiter import AsyncLimiter
from telegram.error import BadRequest, NetworkError, RetryAfter
from telegram.ext import BaseRateLimiter

from bot.logs import network_cause
from bot.settings.telegram import TelegramSettings

log = logging.getLogger(__name__)

# Defaults of the settings (Telegram's documented limits).
OVERALL_PER_SECOND = 30.0
CHAT_PER_SECOND = 1.0
# A private chat may burst a few messages (a split answer) before its pace applies.
CHAT_BURST = 8.0
GROUP_PER_MINUTE = 20.0
# The overall pace is kept this much under the setting (about 27/s for 30/s): the requests
# leave evenly spaced, and a few milliseconds of network jitter must not push a second over.
OVERALL_MARGIN = 1.1
MAX_RETRY_AFTER = 10
MAX_NETWORK_RETRIES = 6
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 16.0
# Requests that put a message in a chat; the others (answerCallbackQuery, getMe...) are free.
LIMITED = frozenset(
    {"sendMessage", "editMessageText", "editMessageReplyMarkup", "sendChatAction", "copyMessage"}
)
# Cosmetic requests (the "typing" action, a button's answer): retried at most once, and never
# waiting long for a pause or a backoff, so they cannot hold up the real reply behind them.
COSMETIC = frozenset({"sendChatAction", "answerCallbackQuery"})
COSMETIC_RETRIES = 1
COSMETIC_MAX_WAIT = 1.0
MAX_LIMITERS = 4096
# Requests on the wire at once: 4 carry 40 messages/s at a 100 ms round trip, above
# Telegram's 30/s; more only make httpx's connection pool slower (measured with
# bench/telegram.py), not the bot faster.
MAX_IN_FLIGHT = 4


def retry_after_seconds(exc: RetryAfter) -> float:
    """RetryAfter.retry_after in seconds, whichever type this PTB version returns."""
    with warnings.catch_warnings():
        # PTB 22.2+ warns that the attribute will become a timedelta; both are handled.
        warnings.simplefilter("ignore")
        delay = exc.retry_after
    return float(delay if isinstance(delay, int | float) else delay.total_seconds())


def _retry_after(seconds: float) -> RetryAfter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RetryAfter(max(1, round(seconds)))


class FloodControl(BaseRateLimiter[int]):
    """A PTB rate limiter: Telegram's flood limits plus retries on 429, 5xx and timeouts."""

    def __init__(
        self,
        overall_per_second: float = OVERALL_PER_SECOND,
        chat_per_second: float = CHAT_PER_SECOND,
        group_per_minute: float = GROUP_PER_MINUTE,
        max_retry_after: int = MAX_RETRY_AFTER,
        max_network_retries: int = MAX_NETWORK_RETRIES,
    ) -> None:
        # 0 switches a limit off. Overall: one request at a time, evenly spaced (no burst),
        # so no second ever holds more than the setting.
        self._overall = (
            AsyncLimiter(1, OVERALL_MARGIN / overall_per_second) if overall_per_second else None
        )
        self._chat_rate = chat_per_second
        self._group_per_minute = group_per_minute
        self._limiters: dict[int | str, AsyncLimiter] = {}
        self._paused_until: dict[int | str, float] = {}
        self.max_retry_after = max_retry_after
        self.max_network_retries = max_network_retries
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    @classmethod
    def from_settings(cls, telegram: TelegramSettings) -> FloodControl:
        """The limits of `[telegram] max_messages_per_second` and `..._per_chat_per_second`."""
        return cls(telegram.max_messages_per_second, telegram.max_messages_per_chat_per_second)

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    def _chat_limiter(self, chat: int | str) -> AsyncLimiter | None:
        """The chat's pace: a burst, then the sustained rate (None when switched off)."""
        is_group = isinstance(chat, str) or chat < 0
        if not (self._group_per_minute if is_group else self._chat_rate):
            return None
        limiter = self._limiters.get(chat)
        if limiter is None:
            if len(self._limiters) > MAX_LIMITERS:
                # Forget chats whose bucket has drained: they start afresh anyway.
                idle = [k for k, lim in self._limiters.items() if lim.has_capacity(lim.max_rate)]
                for key in idle:
                    del self._limiters[key]
            if is_group:
                limiter = AsyncLimiter(self._group_per_minute, 60)
            else:
                limiter = AsyncLimiter(CHAT_BURST, CHAT_BURST / self._chat_rate)
            self._limiters[chat] = limiter
        return limiter

    def paused_for(self, key: int | str) -> float:
        """Seconds until requests under `key` (a chat, or "method:<name>") may go again."""
        return max(0.0, self._paused_until.get(key, 0.0) - time.monotonic())

    async def _wait_pause(self, key: int | str) -> None:
        while True:
            delay = self.paused_for(key)
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Wait for the limits, send, and retry what Telegram or the network refused."""
        raw_chat = data.get("chat_id")
        chat: int | str | None
        try:
            chat = int(raw_chat) if raw_chat is not None else None
        except (TypeError, ValueError):
            chat = str(raw_chat)
        # A 429 pauses what it was about: that chat, or (no chat: answerCallbackQuery,
        # setMyCommands...) that method only, never every chat.
        key: int | str = chat if chat is not None else f"method:{endpoint}"
        limited = endpoint in LIMITED and chat is not None
        cosmetic = endpoint in COSMETIC
        retry_after_count = network_count = 0
        while True:
            if cosmetic and self.paused_for(key) > COSMETIC_MAX_WAIT:
                # Not worth holding the reply back for: give up on this one.
                raise _retry_after(self.paused_for(key))
            await self._wait_pause(key)
            if limited and chat is not None:
                chat_limiter = self._chat_limiter(chat)
                if chat_limiter is not None:
                    await chat_limiter.acquire()
            try:
                # Waiting for a chat's pace happened above, so a flooded chat holds no slot;
                # the overall pace is taken last, right before the request leaves, so
                # requests that waited for a slot cannot bunch up past it.
                async with self._in_flight:
                    if limited and self._overall is not None:
                        await self._overall.acquire()
                    return await callback(*args, **kwargs)
            except RetryAfter as exc:
                retry_after_count += 1
                seconds = retry_after_seconds(exc)
                self._paused_until[key] = max(
                    self._paused_until.get(key, 0.0), time.monotonic() + float(seconds) + 0.05
                )
                if retry_after_count > self.max_retry_after:
                    raise
                if cosmetic and (
                    retry_after_count > COSMETIC_RETRIES or seconds > COSMETIC_MAX_WAIT
                ):
                    raise
                log.warning("flood limit on %s: waiting %.1fs", endpoint, seconds)
            except BadRequest:
                # The request itself is wrong; sending it again changes nothing.
                raise
            except NetworkError as exc:
                # 5xx, disconnects and timeouts: the message may or may not have arrived;
                # at-least-once beats losing it.
                network_count += 1
                if network_count > (COSMETIC_RETRIES if cosmetic else self.max_network_retries):
                    raise
                delay_s = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (network_count - 1))
                delay_s *= 0.75 + random.random() / 2
                log.warning(
                    "%s failed (%s); retry %d in %.1fs",
                    endpoint,
                    network_cause(exc),
                    network_count,
                    delay_s,
                )
                await asyncio.sleep(delay_s)
