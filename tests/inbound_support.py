"""Helpers for the inbound-mail tests: settings with a bot mailbox, replies built like clients'."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import sqlite_utils

from bot.enquiries import submit_enquiry
from bot.mail.inbound.address import enquiry_reply_address
from bot.settings import Settings
from tests.dialogue_support import START, make_settings

STAFF = "anna.bianchi@segreteria-eccp.eu"
DRAFT = {
    "name": "Maria Rossi",
    "email": "maria.rossi@example.org",
    "organisation": "Cluster Lombardia",
    "country": "Italy",
    "question": "How many partners must a consortium have?",
}


def inbox_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings with a bot mailbox and the staff domain on the allow-list."""
    inbox = {
        "host": "127.0.0.1",
        "port": 1,
        "security": "none",
        "username": "bot@example.org",
        "password": "secret",
        "reply_address": "bot@example.org",
        **overrides.pop("inbox", {}),
    }
    secretariat = {"email": "segreteria@example.org", "answer_from": ["@segreteria-eccp.eu"]}
    secretariat.update(overrides.pop("secretariat", {}))
    return make_settings(
        data_dir,
        inbox=inbox,
        secretariat=secretariat,
        telegram=overrides.pop("telegram", {"admin_chat_id": -1001234}),
        **overrides,
    )


def submit(db: sqlite_utils.Database, settings: Settings, user: str = "u1") -> dict[str, Any]:
    """One confirmed Telegram enquiry."""
    return submit_enquiry(
        db,
        settings,
        DRAFT,
        channel="telegram",
        user_id=user,
        chat_id=f"chat-{user}",
        username="maria_r",
        lang="it",
        faq_history=[],
        now=START,
    )


def enquiry_message_id(db: sqlite_utils.Database, enquiry_id: int) -> str:
    """The Message-ID of the enquiry's e-mail to the secretariat."""
    row = db.execute(
        "SELECT idempotency_key FROM deliveries WHERE enquiry_id = ? AND kind = 'enquiry'",
        [enquiry_id],
    ).fetchone()
    return str(row[0])


def reply(
    db: sqlite_utils.Database,
    settings: Settings,
    enquiry: dict[str, Any],
    body: str = "Sì, almeno tre partner.\n\nCordiali saluti\nAnna",
    *,
    sender: str = STAFF,
    to: str | None = None,
    subject: str | None = None,
    message_id: str = "<reply-1@mail.segreteria-eccp.eu>",
    thread: bool = True,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A Gmail-like reply to the enquiry's e-mail, as raw bytes."""
    original = enquiry_message_id(db, int(enquiry["id"]))
    message = EmailMessage()
    message["From"] = f"Anna Bianchi <{sender}>"
    message["To"] = to or enquiry_reply_address(db, settings, str(enquiry["ref"]))
    message["Subject"] = subject or f"Re: [{enquiry['ref']}] Nuova richiesta"
    message["Message-ID"] = message_id
    if thread:
        message["In-Reply-To"] = original
        message["References"] = original
    for name, value in (headers or {}).items():
        message[name] = value
    quoted = "\n".join(f"> {line}" for line in ("Nuova richiesta", "Domanda: quanti partner?"))
    message.set_content(
        f"{body}\n\nIl giorno gio 26 nov 2026 alle ore 10:00 Cluster call bot "
        f"<noreply@example.org> ha scritto:\n{quoted}\n"
    )
    return message.as_bytes(policy=SMTP)
