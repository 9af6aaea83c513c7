"""Telegram's webhook on the chat's port (`Webhook.serve_with`): one port for both."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from bot.channels.web.guards import error, read_body
from bot.settings.web import WEB_PATHS

if TYPE_CHECKING:
    from bot.settings import Settings

TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TELEGRAM_MAX_BODY = 1024 * 1024


class TelegramWebhook:
    """The webhook route; answers 404 until telegram_webhook's Receiver is mounted."""

    def __init__(self) -> None:
        self._mounted: tuple[str, Any] | None = None

    def mount(self, path: str, receiver: Any) -> None:
        """Serve the webhook at `path`.

        `receiver` is telegram_webhook's Receiver: check_secret, accept (journals the
        update and commits before the 200), health.
        """
        self._mounted = (path if path.startswith("/") else f"/{path}", receiver)

    @property
    def mounted(self) -> bool:
        """A receiver is mounted: the webhook is served here."""
        return self._mounted is not None

    def health(self) -> Any:
        """The mounted receiver's health report."""
        assert self._mounted is not None, "mount the webhook first"
        return self._mounted[1].health()

    async def update(self, request: Request) -> Response:
        """One update from Telegram: journaled, then 200."""
        if self._mounted is None or request.url.path != self._mounted[0]:
            return error(404, "not found")
        receiver = self._mounted[1]
        if not receiver.check_secret(request.headers.get(TELEGRAM_SECRET_HEADER)):
            return Response(status_code=403)
        body = await read_body(request, TELEGRAM_MAX_BODY)
        if body is None:
            return Response(status_code=413)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return Response(status_code=400)
        if not isinstance(payload, dict) or not isinstance(payload.get("update_id"), int):
            return Response(status_code=400)
        # Journaled (committed) before Telegram gets its 200, as in telegram_webhook.
        receiver.accept([payload])
        return Response(status_code=200)


def webhook_path(settings: Settings) -> str | None:
    """The path of the configured webhook URL, None when there is none to serve here."""
    url = settings.telegram.webhook_url
    if not url:
        return None
    path = urlsplit(url).path or "/"
    # Settings refuse a webhook path that is one of the chat's own when [web] is on.
    return None if path in WEB_PATHS or path.startswith("/chat/") else path
