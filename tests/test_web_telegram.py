"""The web chat beside Telegram in one process: an admin's reply reaches the open page live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from telegram_harness import ADMIN_CHAT, ADMIN_USER, make_settings, running_bot, until
from telegram_standin import BotApiStandIn
from test_web import full_enquiry

from bot.channels.web.serve import serve_web
from bot.channels.web.server import WebChannel, last_telegram_update
from tests.web_support import WebRun


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[BotApiStandIn]:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    with BotApiStandIn() as standin:
        yield standin
        assert standin.rejected() == [], [(r.method, r.response) for r in standin.rejected()]


async def test_admin_reply_in_telegram_arrives_live_on_the_web_page(
    tmp_path: Path, api: BotApiStandIn
) -> None:
    settings = make_settings(tmp_path, api, web={"enabled": True, "port": 0})
    async with running_bot(settings, api) as h:
        db = h.app.db
        channel = WebChannel(
            settings, h.app, last_telegram_contact=lambda: last_telegram_update(db)
        )
        stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(serve_web(channel, stop, ready=ready.set_result))
        try:
            base = await asyncio.wait_for(ready, 60)
            run = WebRun(base, h.app, channel, settings)
            async with httpx.AsyncClient(base_url=base, timeout=60) as http:
                ref, token = await full_enquiry(http, run, address="198.51.100.20")
                post = await until(
                    lambda: next((m for m in api.bot_messages(ADMIN_CHAT) if ref in m.text), None),
                    what="admin post",
                )
                headers = {"X-Chat-Session": token, "Last-Event-ID": "100000"}
                async with http.stream("GET", "/chat/api/events", headers=headers) as stream:
                    chunks = stream.aiter_text()
                    buffer = ""
                    while "event: ready" not in buffer:
                        buffer += await anext(chunks)
                    api.push_message(
                        ADMIN_CHAT,
                        "Yes, <b>Iceland</b> may join.",
                        user_id=ADMIN_USER,
                        reply_to=post,
                    )
                    while "Iceland</b> may join" not in buffer:
                        buffer += await asyncio.wait_for(anext(chunks), 60)
                event = next(b for b in buffer.split("\n\n") if "may join" in b)
                message = json.loads(event.split("data: ", 1)[1])
                assert ref in message["title"]
                assert message["parts"] == [{"text": "Yes, <b>Iceland</b> may join."}]
                health = (await http.get("/healthz")).json()
                assert health["status"] == "ok" and health["telegram"]["last_contact"]
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)


async def test_webhook_mode_takes_telegram_updates_on_the_web_port(
    tmp_path: Path, api: BotApiStandIn
) -> None:
    """PTB's custom-webhook pattern: Telegram posts to a route of the web chat's server."""
    from bot.app import App
    from bot.channels.telegram import TelegramChannel
    from tests.web_support import free_port

    port = free_port()
    settings = make_settings(
        tmp_path,
        api,
        telegram={"webhook_url": f"http://127.0.0.1:{port}/telegram/hook"},
        web={"enabled": True, "port": port},
    )
    async with App(settings) as app:
        telegram = TelegramChannel(settings, app)
        web = WebChannel(settings, app)
        telegram.webhook.serve_with(web.mount_webhook)
        stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        serving = asyncio.ensure_future(serve_web(web, stop, ready=ready.set_result))
        base = await asyncio.wait_for(ready, 60)
        started = asyncio.Event()
        running = asyncio.ensure_future(telegram.run(ready=started.set))
        try:
            await asyncio.wait_for(started.wait(), 60)
            assert api.webhook["url"] == f"{base}/telegram/hook"
            api.push_message(31, "What is the total budget of the call?")
            replies = await until(lambda: api.bot_messages(31), 60, "reply via webhook")
            assert "6,000,000" in replies[0].text
            async with httpx.AsyncClient(base_url=base, timeout=60) as http:
                health = (await http.get("/healthz")).json()
                assert health["telegram"]["webhook"]["ok"] is True
                # Without Telegram's secret header the route refuses.
                forged = await http.post("/telegram/hook", json={"update_id": 99})
                assert forged.status_code == 403
        finally:
            telegram.stop()
            await asyncio.wait_for(running, 60)
            stop.set()
            await asyncio.wait_for(serving, 60)
