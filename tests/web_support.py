"""Run the web channel for tests: the real app, uvicorn on a free loopback port, a browser."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.channels.web.serve import serve_web
from bot.channels.web.server import WebChannel
from bot.settings import Settings
from bot.settings.load import settings_from_mapping

CHROMIUM = os.environ.get("CLUSTERBOT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Generous: the machine is shared; these wait for events, they do not measure speed.
WAIT_MS = 30_000


def free_port() -> int:
    """A loopback port nobody listens on right now (kept across a restart of the server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def web_settings(data_dir: Path, port: int = 0, **web: Any) -> Settings:
    """Settings for a test server: its own data dir, the embedded mail store."""
    values: Mapping[str, Any] = {"data_dir": str(data_dir), "web": {"port": port, **web}}
    return settings_from_mapping(values, "test")


@dataclass
class WebRun:
    """A running web channel."""

    base: str
    app: App
    channel: WebChannel
    settings: Settings


@contextlib.asynccontextmanager
async def running_web(settings: Settings) -> AsyncIterator[WebRun]:
    """Start the app and the web server; stop both on exit."""
    async with App(settings) as app:
        channel = WebChannel(settings, app)
        stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(serve_web(channel, stop, ready=ready.set_result))
        try:
            done, _ = await asyncio.wait(
                {task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED
            )
            if ready not in done:
                task.result()  # raises the server's start-up error
                raise AssertionError("the web server did not start")
            yield WebRun(ready.result(), app, channel, settings)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)


def require_chromium() -> str:
    """The browser's path; under CI a missing browser fails the run, elsewhere it skips."""
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if path:
        return path
    message = (
        f"Chromium not found at {CHROMIUM}: the browser tests need Debian's chromium "
        "(apt-get install chromium chromium-driver; .ci/run installs it)"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " -- CI=true, so this is an error", pytrace=False)
    pytest.skip("BROWSER TESTS SKIPPED: " + message)
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def browser_page(**context: Any) -> AsyncIterator[Any]:
    """A fresh Chromium page (Playwright, Debian's browser; nothing is downloaded)."""
    path = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            ctx = await browser.new_context(**context)
            ctx.set_default_timeout(WAIT_MS)
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.errors = errors  # type: ignore[attr-defined]
            yield page
            assert not errors, f"JavaScript errors on the page: {errors}"
        finally:
            await browser.close()
