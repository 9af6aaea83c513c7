"""The secretariat's Telegram chat: its id, and following it when it becomes a supergroup."""

from __future__ import annotations

import sqlite_utils

from bot.deliveries import store as deliveries
from bot.enquiries.records import chat_delivery
from bot.settings import Settings
from bot.storage import (
    dumps,
    get_meta,
    record_audit,
    set_meta,
    utc_now,
)

ADMIN_CHAT_KEY = "telegram.admin_chat_id"


def admin_chat_id(db: sqlite_utils.Database, settings: Settings) -> int:
    """The secretariat's Telegram chat: the setting, or the supergroup it became."""
    configured = settings.telegram.admin_chat_id
    if configured == 0:
        return 0
    moved = get_meta(db, ADMIN_CHAT_KEY)
    if moved:
        old, _, new = moved.partition(">")
        if old == str(configured) and new.lstrip("-").isdigit():
            return int(new)
    return configured


def follow_admin_chat(db: sqlite_utils.Database, settings: Settings, old: int, new: int) -> None:
    """The admin group became a supergroup (inside the caller's transaction): remember
    the new id, send what waits there, and tell the secretariat to update the setting."""
    configured = settings.telegram.admin_chat_id
    set_meta(db, ADMIN_CHAT_KEY, f"{configured}>{new}")
    deliveries.retarget(db, "telegram", str(old), str(new))
    chat_delivery(
        db,
        channel="telegram",
        kind="admin_chat_moved",
        enquiry_id=None,
        recipient=str(new),
        payload=dumps({"old": old, "new": new}),
        now=utc_now(),
    )
    record_audit(
        db, "admin_chat_moved", actor="system", now=utc_now(), detail={"old": old, "new": new}
    )


def admin_chat_problems(db: sqlite_utils.Database) -> list[str]:
    """`clusterbot check`: the admin group moved and the setting still names the old one."""
    moved = get_meta(db, ADMIN_CHAT_KEY)
    if not moved:
        return []
    old, _, new = moved.partition(">")
    return [
        f"telegram.admin_chat_id: the admin group {old} became the supergroup {new}; the bot "
        f"follows it, but set admin_chat_id = {new} in the settings file"
    ]
