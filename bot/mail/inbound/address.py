"""The bot's per-enquiry reply address, its unguessable token, and who may answer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings import Settings

SECRET_KEY = "inbox.token_secret"
# 16 base32 characters = 80 bits: guessing one is hopeless, and the address stays short.
TOKEN_LENGTH = 16
_PLUS = re.compile(
    r"^(?P<local>[^+@]+)\+(?P<ref>[A-Za-z0-9]+-\d+)\.(?P<token>[a-z2-7]+)$", re.I | re.A
)


def token_secret(db: sqlite_utils.Database) -> bytes:
    """The HMAC secret, generated once and kept in the database (meta table)."""
    from bot.storage import transaction

    row = db.conn.execute("SELECT value FROM meta WHERE key = ?", (SECRET_KEY,)).fetchone()
    if row is None:
        candidate = secrets.token_hex(32)
        with transaction(db):
            # INSERT OR IGNORE: two processes racing on a fresh database agree on the first.
            db.conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (SECRET_KEY, candidate)
            )
        row = db.conn.execute("SELECT value FROM meta WHERE key = ?", (SECRET_KEY,)).fetchone()
    return bytes.fromhex(str(row[0]))


def enquiry_token(secret: bytes, ref: str) -> str:
    """The token that proves a reply address was handed out by this bot for `ref`."""
    digest = hmac.new(secret, ref.upper().encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:TOKEN_LENGTH]


def reply_address(settings: Settings, secret: bytes, ref: str) -> str:
    """bot+ECCP-0042.<token>@example.org for `ref` (needs inbox.reply_address)."""
    local, _, domain = settings.inbox.reply_address.partition("@")
    return f"{local}+{ref.upper()}.{enquiry_token(secret, ref)}@{domain}"


@dataclass(frozen=True)
class AddressMatch:
    """A plus-address of ours found among a mail's recipients."""

    ref: str
    valid: bool


def match_reply_address(
    settings: Settings, secret: bytes, recipients: tuple[str, ...]
) -> AddressMatch | None:
    """The reference a recipient address of ours names, and whether its token is right."""
    base_local, _, base_domain = settings.inbox.reply_address.lower().partition("@")
    found: AddressMatch | None = None
    for recipient in recipients:
        local, _, domain = recipient.lower().partition("@")
        if base_domain and domain != base_domain:
            continue
        match = _PLUS.match(local)
        if not match or (base_local and match.group("local") != base_local):
            continue
        ref = match.group("ref").upper()
        valid = hmac.compare_digest(match.group("token"), enquiry_token(secret, ref))
        if valid:
            return AddressMatch(ref, True)
        found = found or AddressMatch(ref, False)
    return found


def may_answer(settings: Settings, sender: str) -> bool:
    """True when `sender` is on the secretariat's allow-list (its own address always is)."""
    address = sender.strip().lower()
    if not address or "@" not in address:
        return False
    if address == settings.secretariat.email.lower():
        return True
    domain = "@" + address.rpartition("@")[2]
    return any(entry in (address, domain) for entry in settings.secretariat.answer_from)


def enquiry_reply_address(db: sqlite_utils.Database, settings: Settings, ref: str) -> str | None:
    """The Reply-To for `ref`'s mails to the secretariat: ours when an inbox reads replies."""
    if not settings.inbox.configured:
        return None
    return reply_address(settings, token_secret(db), ref)
