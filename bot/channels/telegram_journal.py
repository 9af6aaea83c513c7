"""Crash safety for Telegram: the update journal and durable outgoing chat messages.

No Telegram import here: plain SQLite over `updates`, and replies queued as deliveries.

* Every fetched update is written to `updates` before its offset is confirmed to Telegram
  (the next getUpdates call) or before the webhook answers 200.
* Handling an update commits its effects, the messages to send (a `deliveries` row of
  kind `reply`, claimed by this process) and `updates.handled_at` in one transaction, so
  each update is handled exactly once, and a crash between the commit and the send only
  delays the replies.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from bot.deliveries import store as deliveries
from bot.deliveries.model import Delivery, NewDelivery
from bot.storage import dumps, from_iso, to_iso, transaction

CHANNEL = "telegram"
# The kind of the channel's own deliveries: the messages produced by handling one update,
# stored as JSON until Telegram accepted them.
KIND_REPLY = "reply"
# The handler sends its own replies at once; the worker only takes a `reply` row over when
# the handler could not (Telegram down) or the process died. This lease keeps them apart.
REPLY_LEASE = timedelta(minutes=2)
# Handled updates are kept this long (Telegram re-delivers unconfirmed ones for 24 h).
JOURNAL_KEEP = timedelta(days=2)


@dataclass(frozen=True)
class OutMessage:
    """One chat message to send: HTML text and inline buttons as (callback_data, label) rows."""

    chat_id: int
    html: str
    buttons: tuple[tuple[tuple[str, str], ...], ...] = ()
    reply_to: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        data: dict[str, Any] = {"chat_id": self.chat_id, "html": self.html}
        if self.buttons:
            data["buttons"] = [[list(b) for b in row] for row in self.buttons]
        if self.reply_to is not None:
            data["reply_to"] = self.reply_to
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutMessage:
        """Back from to_json()."""
        rows = tuple(tuple((str(b[0]), str(b[1])) for b in row) for row in data.get("buttons", []))
        return cls(int(data["chat_id"]), str(data["html"]), rows, data.get("reply_to"))


log = logging.getLogger(__name__)


def quarantine_problems(db: sqlite_utils.Database) -> list[str]:
    """`clusterbot check`: one line per quarantined Telegram update."""
    columns = {c.name for c in db["updates"].columns} if db["updates"].exists() else set()
    if "quarantined_at" not in columns:
        return []
    return [
        f"Telegram update {update_id} failed repeatedly and was set aside on "
        f"{at:%Y-%m-%d %H:%M} UTC ({error or 'no detail'}); the bot skips it. Its payload "
        "stays in the table `updates` for a look; once done, remove it with "
        f"DELETE FROM updates WHERE update_id = {update_id}"
        for update_id, at, error in Journal(db).quarantined()
    ]


class Journal:
    """The `updates` journal and the channel's durable outgoing messages."""

    def __init__(self, db: sqlite_utils.Database, owner: str | None = None) -> None:
        self.db = db
        # The sender that claims this process's replies (None: queued for another process).
        self.owner = owner
        # Reply keys: unique per process (a random prefix) and per reply (a counter), without
        # a random draw (a system call) per handled update.
        self._key_prefix = uuid.uuid4().hex[:16]
        self._keys = itertools.count(1)

    # -- updates ---------------------------------------------------------------------------

    def record(self, updates: Iterable[tuple[int, str]], now: datetime) -> None:
        """Journal (update_id, JSON payload) pairs in one transaction; known ids are kept."""
        rows = [(update_id, payload, to_iso(now)) for update_id, payload in updates]
        if not rows:
            return
        with transaction(self.db):
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO updates (update_id, payload, received_at) VALUES (?, ?, ?)",
                rows,
            )

    def unhandled(self) -> list[tuple[int, dict[str, Any], datetime]]:
        """Journaled updates not handled yet (id, payload, when received), oldest first."""
        cursor = self.db.execute(
            "SELECT update_id, payload, received_at FROM updates WHERE handled_at IS NULL "
            "AND quarantined_at IS NULL ORDER BY update_id"
        )
        return [
            (int(uid), json.loads(payload), from_iso(received))
            for uid, payload, received in cursor.fetchall()
        ]

    def is_handled(self, update_id: int) -> bool:
        """Whether this update's effects are committed already."""
        row = self.db.execute(
            "SELECT handled_at FROM updates WHERE update_id = ?", [update_id]
        ).fetchone()
        return row is not None and row[0] is not None

    def mark_handled(self, update_id: int, now: datetime) -> bool:
        """Mark handled (inside the caller's transaction); False if it already was."""
        # The payload (people's messages) is not needed once handled: only the id stays,
        # to recognise a re-delivery.
        cursor = self.db.conn.execute(
            "UPDATE updates SET handled_at = ?, payload = '{}' "
            "WHERE update_id = ? AND handled_at IS NULL",
            (to_iso(now), update_id),
        )
        return bool(cursor.rowcount)

    def count_attempt(self, update_id: int, error: str | None = None) -> int:
        """One more handling run of this update began or failed (inside the caller's
        transaction); returns the count."""
        row = self.db.conn.execute(
            "UPDATE updates SET attempts = attempts + 1, "
            "last_error = coalesce(?, last_error) WHERE update_id = ? RETURNING attempts",
            (error[:200] if error else None, update_id),
        ).fetchone()
        return int(row[0]) if row else 0

    def quarantine(self, update_id: int, now: datetime, error: str) -> bool:
        """Set a failing update aside, kept but never handled (inside the caller's
        transaction); False if it was handled or set aside already."""
        cursor = self.db.conn.execute(
            "UPDATE updates SET quarantined_at = ?, last_error = ? "
            "WHERE update_id = ? AND handled_at IS NULL AND quarantined_at IS NULL",
            (to_iso(now), error[:200], update_id),
        )
        return bool(cursor.rowcount)

    def quarantined(self) -> list[tuple[int, datetime, str]]:
        """Updates set aside: (update_id, when, why), oldest first."""
        cursor = self.db.execute(
            "SELECT update_id, quarantined_at, coalesce(last_error, '') FROM updates "
            "WHERE quarantined_at IS NOT NULL ORDER BY update_id"
        )
        return [(int(uid), from_iso(at), str(error)) for uid, at, error in cursor.fetchall()]

    def prune(self, now: datetime) -> int:
        """Forget handled updates older than JOURNAL_KEEP (Telegram re-delivers for 24 h)."""
        with transaction(self.db):
            cursor = self.db.execute(
                "DELETE FROM updates WHERE handled_at IS NOT NULL AND handled_at < ?",
                [to_iso(now - JOURNAL_KEEP)],
            )
        return int(cursor.rowcount)

    # -- durable outgoing messages ------------------------------------------------------------

    def add_replies(
        self, chat_id: int, messages: Sequence[OutMessage], now: datetime
    ) -> Delivery | None:
        """Queue the messages to send to one chat (inside the caller's transaction).

        Claimed by this process (`owner`), which sends it at once: the delivery as stored is
        returned for that. Should the process die first, the claim is taken over and the
        messages go out all the same. None: queued for the process that delivers (no owner
        here)."""
        new = NewDelivery(
            transport=CHANNEL,
            kind=KIND_REPLY,
            recipient=str(chat_id),
            payload=dumps([m.to_json() for m in messages]),
            idempotency_key=f"{CHANNEL}:{KIND_REPLY}:{self._key_prefix}-{next(self._keys)}",
        )
        if self.owner is None:
            deliveries.enqueue(self.db, new, now)
            return None
        return deliveries.enqueue_claimed(self.db, new, now, owner=self.owner, lease=REPLY_LEASE)
