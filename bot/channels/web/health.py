"""GET /healthz: the database, the transcripts' backlog and Telegram's last contact."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.channels.web import transcript

if TYPE_CHECKING:
    import sqlite_utils

    from bot.channels.web.telegram_hook import TelegramWebhook


class Health:
    """The health route: 200 when the database answers, else 503."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        webhook: TelegramWebhook,
        last_telegram_contact: Callable[[], datetime | None] | None = None,
    ) -> None:
        self.db = db
        self.webhook = webhook
        self.last_telegram_contact = last_telegram_contact

    async def report(self, request: Request) -> Response:
        """The health report as JSON."""
        report: dict[str, Any] = {"status": "ok"}
        try:
            self.db.conn.execute("SELECT 1").fetchone()
            report["database"] = "ok"
            report["backlog"] = transcript.backlog(self.db)
        except Exception as exc:
            report.update(status="error", database=f"error: {type(exc).__name__}")
        contact = self.last_telegram_contact() if self.last_telegram_contact else None
        telegram: dict[str, Any] = {"last_contact": contact.isoformat() if contact else None}
        if self.webhook.mounted:
            telegram["webhook"] = self.webhook.health()
        report["telegram"] = telegram
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)


def last_telegram_update(db: Any) -> datetime | None:
    """When the bot last heard from Telegram: the newest journaled update."""
    from bot.storage import from_iso

    row = db.conn.execute("SELECT MAX(received_at) FROM updates").fetchone()
    return from_iso(row[0]) if row and row[0] else None
