"""The web conversation as the page shows it, in SQLite: a reload or a restart keeps it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlite_utils

from bot.storage import dumps, to_iso, transaction

CHANNEL = "web"
# A page replays at most this many messages of its conversation on (re)connect.
HISTORY_LIMIT = 200


def append(
    db: sqlite_utils.Database,
    session: str,
    sender: str,
    messages: Sequence[Mapping[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """Store messages of one sender; returns them with their ids (the SSE event ids)."""
    stored: list[dict[str, Any]] = []
    with transaction(db):
        for message in messages:
            cursor = db.conn.execute(
                "INSERT INTO web_messages (session, at, sender, payload) VALUES (?, ?, ?, ?)",
                (session, to_iso(now), sender, dumps(dict(message))),
            )
            stored.append({"id": cursor.lastrowid, "from": sender, **message})
    return stored


def append_once(
    db: sqlite_utils.Database, session: str, message: Mapping[str, Any], now: datetime
) -> dict[str, Any] | None:
    """Store a bot message unless one with the same `key` is stored already (then None)."""
    with transaction(db):
        found = db.conn.execute(
            "SELECT 1 FROM web_messages WHERE session = ? AND json_extract(payload, '$.key') = ?",
            (session, message["key"]),
        ).fetchone()
        if found is not None:
            return None
        return append(db, session, "bot", [message], now)[0]


def enquiry_label(db: sqlite_utils.Database, enquiry_id: int | None) -> tuple[str, str]:
    """(reference, language) of an enquiry, for the heading of its answer."""
    row = None
    if enquiry_id is not None:
        row = db.conn.execute(
            "SELECT ref, lang FROM enquiries WHERE id = ?", (enquiry_id,)
        ).fetchone()
    return (str(row[0] or ""), str(row[1] or "en")) if row else ("", "en")


def history(db: sqlite_utils.Database, session: str, after: int = 0) -> list[dict[str, Any]]:
    """The session's messages after id `after` (the latest HISTORY_LIMIT), oldest first."""
    rows = db.conn.execute(
        "SELECT id, sender, payload FROM web_messages WHERE session = ? AND id > ? "
        "ORDER BY id DESC LIMIT ?",
        (session, after, HISTORY_LIMIT),
    ).fetchall()
    return [_message(row) for row in reversed(rows)]


def last_bot_message(db: sqlite_utils.Database, session: str) -> dict[str, Any] | None:
    """The latest message the bot showed this session."""
    row = db.conn.execute(
        "SELECT id, sender, payload FROM web_messages WHERE session = ? AND sender = 'bot' "
        "ORDER BY id DESC LIMIT 1",
        (session,),
    ).fetchone()
    return _message(row) if row else None


def audit_mark(db: sqlite_utils.Database) -> int:
    """The newest audit row's id, to see afterwards what a turn recorded."""
    row = db.conn.execute("SELECT MAX(id) FROM audit").fetchone()
    return int(row[0] or 0) if row else 0


def erased_since(db: sqlite_utils.Database, mark: int) -> bool:
    """Whether an applicant's /forget was recorded after audit row `mark`.

    Read inside the turn's own write transaction, so the row is this turn's.
    """
    row = db.conn.execute(
        "SELECT 1 FROM audit WHERE id > ? AND event = 'erased' AND actor = 'applicant' LIMIT 1",
        (mark,),
    ).fetchone()
    return row is not None


def forget(db: sqlite_utils.Database, session: str) -> int:
    """Delete the page's copy of a conversation (after /forget erased the rest)."""
    with transaction(db):
        return int(
            db.conn.execute("DELETE FROM web_messages WHERE session = ?", (session,)).rowcount
        )


def purge_idle(db: sqlite_utils.Database, before: datetime) -> int:
    """Delete the conversations whose last message is older than `before`."""
    with transaction(db):
        return int(
            db.conn.execute(
                "DELETE FROM web_messages WHERE session IN (SELECT session FROM web_messages "
                "GROUP BY session HAVING MAX(at) < ?)",
                (to_iso(before),),
            ).rowcount
        )


def backlog(db: sqlite_utils.Database) -> int:
    """Messages still waiting to go out: the deliveries queue (every channel's)."""
    from bot.deliveries import store
    from bot.deliveries.model import QUEUED, RETRYING, SENDING

    counts = store.counts(db)
    return sum(counts[status] for status in (QUEUED, SENDING, RETRYING))


def _message(row: Sequence[Any]) -> dict[str, Any]:
    payload = json.loads(row[2])
    return {
        "id": int(row[0]),
        "from": str(row[1]),
        **(payload if isinstance(payload, dict) else {}),
    }
