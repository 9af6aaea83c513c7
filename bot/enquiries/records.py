"""Shared pieces of the enquiry rules: statuses, references, row helpers, chat deliveries."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlite_utils

from bot.deliveries import store as deliveries
from bot.deliveries.model import NewDelivery

STATUSES = ("open", "answered", "closed")
# The web chat's channel name: its answers travel through the deliveries queue.
WEB_CHANNEL = "web"
# Columns that identify or describe a person; erasure nulls them.
PERSONAL_COLUMNS = (
    "user_id",
    "chat_id",
    "username",
    "name",
    "email",
    "organisation",
    "question",
    "answer",
    "close_note",
)


ERASED_NOTE = "erased at the applicant's request"
# The notification that edits an enquiry's admin-chat post to its erased form (payload:
# the message id of another post of the enquiry to edit, e.g. a follow-up's; empty: the
# enquiry's own post).
POST_ERASED = "post_erased"
# An applicant's follow-up posted in the admin chat (payload: its text); replying to that
# post answers the enquiry like replying to the enquiry's own post.
FOLLOW_UP_POSTED = "follow_up_posted"
_REF = re.compile(r"^([A-Z][A-Z0-9]{0,9})-0*(\d{1,9})$")


def format_ref(prefix: str, enquiry_id: int) -> str:
    """The reference shown to everyone: PREFIX-NNNN (at least four digits)."""
    return f"{prefix}-{enquiry_id:04d}"


def insert_row(db: sqlite_utils.Database, table: str, row: Mapping[str, Any]) -> int:
    # Plain SQL: sqlite-utils' insert() introspects the table on every call.
    columns = ", ".join(row)
    marks = ", ".join(f":{name}" for name in row)
    cursor = db.conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", dict(row))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def select_rows(
    db: sqlite_utils.Database, sql: str, params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    """The rows of a query as dicts, column name to value."""
    cursor = db.conn.execute(sql, tuple(params))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def chat_delivery(
    db: sqlite_utils.Database,
    *,
    channel: str,
    kind: str,
    enquiry_id: int | None,
    recipient: str,
    payload: str,
    now: datetime,
) -> int:
    # What to say and to whom; the channel's transport says it in its own words.
    return deliveries.enqueue(
        db,
        NewDelivery(
            transport=channel,
            kind=kind,
            recipient=recipient,
            payload=payload,
            idempotency_key=f"{channel}:{kind}:{enquiry_id or '-'}:{uuid.uuid4().hex}",
            enquiry_id=enquiry_id,
        ),
        now,
    )


def normalize_ref(ref: str) -> str:
    """A reference as typed ('eccp-42', ' ECCP-0042 ') in its stored form when recognisable."""
    text = ref.strip().upper()
    match = _REF.match(text)
    if match:
        return format_ref(match.group(1), int(match.group(2)))
    return text
