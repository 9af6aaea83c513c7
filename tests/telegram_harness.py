"""Run the real Telegram channel in-process against the Bot API stand-in, for tests and bench."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telegram_standin import BotApiStandIn, SentMessage

from bot.settings import Settings
from bot.settings.load import settings_from_mapping

ADMIN_CHAT = -1001234567890
ADMIN_USER = 4242
STRANGER = 777


def make_settings(
    tmp: Path,
    api: BotApiStandIn,
    *,
    smtp_port: int | None = None,
    admin_chat: int = ADMIN_CHAT,
    admins: tuple[int, ...] = (ADMIN_USER,),
    **overrides: Any,
) -> Settings:
    """Settings pointing at the stand-in, with data under tmp."""
    telegram: dict[str, Any] = {
        "token": api.token,
        "base_url": api.base_url,
        "admin_chat_id": admin_chat,
        "admin_user_ids": list(admins),
    }
    telegram.update(overrides.pop("telegram", {}))
    data: dict[str, Any] = {
        "language": "en",
        "data_dir": str(tmp / "var"),
        "telegram": telegram,
        "secretariat": {"language": "en"},
        **overrides,
    }
    if smtp_port is not None:
        data["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "security": "none"}
    if admin_chat:
        api.chat(admin_chat, "supergroup")
    return settings_from_mapping(data, "test")


async def until(predicate: Callable[[], Any], limit: float = 15.0, what: str = "") -> Any:
    """Wait (without blocking the event loop) until predicate() is truthy; returns its value."""
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


@dataclass
class Harness:
    """A running bot plus the stand-in."""

    api: BotApiStandIn
    app: Any
    channel: Any
    errors: list[BaseException] = field(default_factory=list)

    async def messages(self, chat_id: int, count: int, limit: float = 15.0) -> list[SentMessage]:
        """Wait until the bot sent `count` messages to the chat; returns all of them."""
        await until(
            lambda: len(self.api.bot_messages(chat_id)) >= count,
            limit,
            f"{count} messages in chat {chat_id}",
        )
        return self.api.bot_messages(chat_id)

    async def say(self, chat_id: int, text: str, **kwargs: Any) -> list[SentMessage]:
        """Send text as the user and wait for at least one new bot message; returns the new ones."""
        before = len(self.api.bot_messages(chat_id))
        update_id = self.api.push_message(chat_id, text, **kwargs)
        await self.handled(update_id)
        return (await self.messages(chat_id, before + 1))[before:]

    async def press(self, message: SentMessage, label: str, **kwargs: Any) -> list[SentMessage]:
        """Press a button and wait for the bot's new messages in that chat."""
        chat_id = message.chat_id
        before = len(self.api.bot_messages(chat_id))
        update_id, _ = self.api.press(message, label, **kwargs)
        await self.handled(update_id)
        await asyncio.sleep(0.05)
        return self.api.bot_messages(chat_id)[before:]

    async def handled(self, update_id: int, limit: float = 15.0) -> None:
        """Wait until the bot committed the update and sent what it produced."""
        db = self.app.db

        def done() -> bool:
            row = db.execute(
                "SELECT handled_at FROM updates WHERE update_id = ?", [update_id]
            ).fetchone()
            return bool(row and row[0]) and self.idle()

        await until(done, limit, f"update {update_id} handled")

    def idle(self) -> bool:
        """No reply row still waiting to be sent."""
        row = self.app.db.execute(
            "SELECT count(*) FROM deliveries WHERE transport = 'telegram' AND kind = 'reply' "
            "AND status IN ('queued', 'sending', 'failed-temporary')"
        ).fetchone()
        return int(row[0]) == 0


@asynccontextmanager
async def running_bot(
    settings: Settings, api: BotApiStandIn, **kwargs: Any
) -> AsyncIterator[Harness]:
    """Start App + TelegramChannel; fail on any handler exception; stop cleanly afterwards."""
    from bot.app import App
    from bot.channels.telegram import TelegramChannel

    async with App(settings) as app:
        channel = TelegramChannel(settings, app, **kwargs)
        harness = Harness(api, app, channel)

        async def on_error(update: object, context: Any) -> None:
            """Any exception in a handler fails the test."""
            harness.errors.append(context.error)

        channel.application.add_error_handler(on_error)
        ready = asyncio.Event()
        task = asyncio.create_task(channel.run(ready=ready.set))
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=20, return_when="FIRST_COMPLETED")
        if task in done:
            waiter.cancel()
            task.result()
            raise AssertionError("the bot stopped during start-up")
        try:
            yield harness
        finally:
            channel.stop()
            await asyncio.wait_for(task, 30)
        if harness.errors:
            raise AssertionError(f"handler errors: {harness.errors!r}")
