"""Webhook mode: a small tornado server that journals each update, then answers 200.

Telegram re-sends an update until it gets a 2xx, so answering only after the journal
commit gives webhook mode the same no-loss guarantee as long polling. `Webhook` registers
the URL with Telegram (or removes a stale one before long polling) and serves it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import tornado.httpserver
import tornado.web
from telegram import Bot
from telegram.error import TelegramError

from bot.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class Receiver(Protocol):
    """What the server needs from the channel."""

    def check_secret(self, header: str | None) -> bool: ...

    def accept(self, payloads: Sequence[dict[str, Any]]) -> None: ...

    def health(self) -> dict[str, Any]: ...


class UpdateHandler(tornado.web.RequestHandler):
    """POST <webhook path>: one update from Telegram."""

    def initialize(self, receiver: Receiver) -> None:
        """Keep the channel."""
        self.receiver = receiver

    def post(self) -> None:
        """Check the secret, journal the update, answer 200."""
        if not self.receiver.check_secret(self.request.headers.get(SECRET_HEADER)):
            # Not Telegram: say nothing more.
            self.set_status(403)
            self.finish()
            return
        try:
            payload = json.loads(self.request.body)
            if not isinstance(payload, dict) or not isinstance(payload.get("update_id"), int):
                raise ValueError("not an update")
        except ValueError:
            self.set_status(400)
            self.finish()
            return
        # Journaled (committed) before the 200 goes out.
        self.receiver.accept([payload])
        self.set_status(200)
        self.finish()


class HealthHandler(tornado.web.RequestHandler):
    """GET /healthz: the bot is up; how many journaled updates wait."""

    def initialize(self, receiver: Receiver) -> None:
        """Keep the channel."""
        self.receiver = receiver

    def get(self) -> None:
        """Answer with a small JSON status."""
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.receiver.health()))


def start_server(
    receiver: Receiver, path: str, listen: str, port: int
) -> tornado.httpserver.HTTPServer:
    """Listen on listen:port; returns the server (call .stop() to close it)."""
    path = path if path.startswith("/") else f"/{path}"
    routes: list[Any] = [(r"/healthz", HealthHandler, {"receiver": receiver})]
    if path != "/healthz":
        routes.append((re.escape(path), UpdateHandler, {"receiver": receiver}))
    application = tornado.web.Application(routes)
    server = tornado.httpserver.HTTPServer(application, max_body_size=MAX_BODY, xheaders=True)
    server.listen(port, address=listen)
    log.info("webhook listening on %s:%d", listen, port)
    return server


class WebhookError(Exception):
    """Telegram refused the webhook URL: a setting for the operator to fix."""


class Webhook:
    """The webhook's secret, its registration with Telegram and the server (a Receiver)."""

    def __init__(
        self,
        settings: Settings,
        bot: Bot,
        accept: Callable[[Sequence[dict[str, Any]]], None],
        health: Callable[[], dict[str, Any]],
        allowed_updates: Sequence[str],
    ) -> None:
        self.settings = settings
        self.bot = bot
        self.accept = accept
        self.health = health
        self.allowed_updates = list(allowed_updates)
        self.server: tornado.httpserver.HTTPServer | None = None
        self.mount: Callable[[str, Receiver], None] | None = None

    def serve_with(self, mount: Callable[[str, Receiver], None]) -> None:
        """Serve the webhook from another server instead of tornado: `mount(path, receiver)`
        is called at start (the web chat's server, so the bot has one port and one /healthz).
        """
        self.mount = mount

    def secret(self) -> str:
        """The configured secret, else one derived from the token (never logged)."""
        secret = self.settings.telegram.webhook_secret
        if secret:
            return secret
        digest = hashlib.sha256(b"clusterbot-webhook:" + self.settings.telegram.token.encode())
        return digest.hexdigest()[:64]

    def check_secret(self, header: str | None) -> bool:
        """Constant-time check of the X-Telegram-Bot-Api-Secret-Token header."""
        return header is not None and hmac.compare_digest(header.encode(), self.secret().encode())

    async def start(self) -> None:
        """Listen, then tell Telegram where to post (raises WebhookError if it refuses)."""
        telegram = self.settings.telegram
        url = telegram.webhook_url
        path = urlsplit(url).path or "/"
        if self.mount is not None:
            self.mount(path, self)
        else:
            self.server = start_server(self, path, telegram.webhook_listen, telegram.webhook_port)
        try:
            await self.bot.set_webhook(
                url, secret_token=self.secret(), allowed_updates=self.allowed_updates
            )
        except TelegramError as exc:
            # Retried already (5xx, 429) or refused (a bad URL): the operator must look.
            detail = getattr(exc, "message", "") or type(exc).__name__
            raise WebhookError(
                f"could not set the webhook {url!r} (telegram.webhook_url): {detail}"
            ) from exc

    def stop(self) -> None:
        """Close the server (Telegram keeps the updates until the next start)."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    async def drop(self) -> None:
        """Before long polling: getUpdates fails with 409 while a webhook is set (for
        example by an earlier deploy)."""
        try:
            info = await self.bot.get_webhook_info()
            if info.url:
                await self.bot.delete_webhook()
        except TelegramError as exc:
            log.warning("could not check the webhook: %s", type(exc).__name__)
