"""Webhook mode: a small tornado server that journals each update, then answers 200.

Telegram re-sends an update until it gets a 2xx, so answering only after the journal
commit gives webhook mode the same no-loss guarantee as long polling.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Protocol

import tornado.httpserver
import tornado.web

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class Receiver(Protocol):
    """What the server needs from the channel."""

    def check_secret(self, header: str | None) -> bool: ...

    def accept(self, payloads: list[dict[str, Any]]) -> None: ...

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
