"""What the `deliveries` SQL modules share: row mapping, placeholders, limits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.deliveries.model import QUEUED, RETRYING, SENDING, Delivery

if TYPE_CHECKING:
    import sqlite_utils

# Kept short in the table, the admin chat and the log: a server reply can be long.
MAX_ERROR = 500
# Deliveries whose last error starts so could not reach their server; they become due at
# once when a delivery through the same transport succeeds again.
UNREACHABLE = "cannot connect"
# A row waiting for a retry this many attempts is reported by `clusterbot check` as stuck.
STUCK_ATTEMPTS = 8
UNSENT = (QUEUED, SENDING, RETRYING)


def short(text: str) -> str:
    """One line, at most MAX_ERROR characters."""
    return " ".join(text.split())[:MAX_ERROR]


def rows(db: sqlite_utils.Database, sql: str, params: Sequence[Any] = ()) -> list[Delivery]:
    cursor = db.conn.execute(sql, tuple(params))
    names = [column[0] for column in cursor.description]
    return [Delivery.from_row(dict(zip(names, values, strict=True))) for values in cursor]


def marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)
