"""The web channel assembled: its parts, its routes, its purge job.

Each route lives with its concern: `pages` (page, widget, static files), `chat_api` (posts),
`events` (SSE), `health`, `telegram_hook` (Telegram's webhook on the same port); `guards`
holds what every chat request must pass (the CSRF defence is described there).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from bot.channels.web import transcript
from bot.channels.web.chat_api import ChatApi
from bot.channels.web.conversation import Conversation
from bot.channels.web.events import EventStreams
from bot.channels.web.guards import SESSION_HEADER
from bot.channels.web.health import Health, last_telegram_update
from bot.channels.web.pages import Pages
from bot.channels.web.telegram_hook import TelegramWebhook, webhook_path
from bot.jobs.retention import session_idle_limit

if TYPE_CHECKING:
    from bot.app import App
    from bot.settings import Settings

__all__ = ["WebChannel", "last_telegram_update"]

WEB_PURGE_JOB = "web-transcripts"


class WebChannel:
    """The dialogue engine behind HTTP: one instance per process, sharing the app's database."""

    def __init__(
        self,
        settings: Settings,
        app: App,
        *,
        last_telegram_contact: Callable[[], datetime | None] | None = None,
    ) -> None:
        assert app.db is not None, "start the App first"
        self.settings = settings
        self.app = app
        self.db = app.db
        self.conversation = Conversation(settings, app)
        self.streams = EventStreams(settings.web, app.db)
        self.chat_api = ChatApi(settings.web, self.conversation)
        self.pages = Pages(settings)
        self.webhook = TelegramWebhook()
        self.health = Health(app.db, self.webhook, last_telegram_contact)
        if app.worker is not None:
            # This process delivers the queue: the secretariat's answers to web applicants
            # are `web` deliveries (see transport.py).
            from bot.channels.web.transport import WebTransport

            app.worker.register(WebTransport(self))
        app.scheduler.add_job(
            self._purge,
            "interval",
            hours=6,
            id=WEB_PURGE_JOB,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=None,
            max_instances=1,
        )

    async def _purge(self) -> None:
        limit = session_idle_limit(self.settings)
        transcript.purge_idle(self.db, self.app.clock() - limit)

    def close(self) -> None:
        """End every open event stream (the server is stopping)."""
        self.streams.close()

    def mount_webhook(self, path: str, receiver: Any) -> None:
        """Serve Telegram's webhook at `path` (`Webhook.serve_with`): one port for both."""
        self.webhook.mount(path, receiver)

    # ------------------------------------------------------------ HTTP

    def asgi(self) -> Starlette:
        """The ASGI application: page, widget, API, health."""
        web = self.settings.web
        routes = [
            Route("/", self.pages.root, methods=["GET"]),
            Route("/chat", self.pages.page, methods=["GET"]),
            Route("/chat/{name:str}", self.pages.asset, methods=["GET"]),
            Route("/widget.js", self.pages.widget, methods=["GET"]),
            Route("/chat/api/message", self.chat_api.post, methods=["POST"]),
            Route("/chat/api/events", self.streams.open, methods=["GET"]),
            Route("/healthz", self.health.report, methods=["GET"]),
        ]
        hook = webhook_path(self.settings)
        if hook is not None:
            routes.append(Route(hook, self.webhook.update, methods=["POST"]))
        middleware = [
            Middleware(
                CORSMiddleware,
                allow_origins=list(web.allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Content-Type", SESSION_HEADER, "Last-Event-ID"],
                max_age=600,
            )
        ]
        return Starlette(routes=routes, middleware=middleware)
