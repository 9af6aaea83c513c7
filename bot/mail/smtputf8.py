"""Internationalised addresses (accented letters before the @) need SMTPUTF8 (RFC 6531).

Whether the configured mail server offers it is learnt when the bot connects to it (the
SMTP transport and `clusterbot check --smtp` record it in `meta`); the form accepts such an
address only when it does, and otherwise tells the applicant plainly why not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings import Settings

META_KEY = "smtp.smtputf8"


def needs_smtputf8(address: str) -> bool:
    """Whether an address can only travel with SMTPUTF8 (its local part is not ASCII)."""
    local, _, domain = address.rpartition("@")
    # A non-ASCII domain is written in its ASCII (punycode) form by the form's validator.
    return not local.isascii() or not domain.isascii()


def smtputf8_offered(db: sqlite_utils.Database, settings: Settings) -> bool:
    """Whether the mail server is known to offer SMTPUTF8.

    The embedded mail store (smtp.host empty) always does; a real server does once a
    connection saw it in the EHLO reply. Unknown counts as no: better a clear refusal now
    than an acknowledgement and answers that can never be delivered.
    """
    if settings.smtp.embedded:
        return True
    row = db.conn.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
    return row is not None and row[0] == _key(settings)


def record_smtputf8(db: sqlite_utils.Database, settings: Settings, offered: bool) -> None:
    """Remember what the server's EHLO said (for this host and port)."""
    value = _key(settings) if offered else "no"
    db.conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (META_KEY, value),
    )


def _key(settings: Settings) -> str:
    # Tied to the server: after a change of smtp.host the old answer no longer counts.
    return f"yes {settings.smtp.host}:{settings.smtp.port}"
