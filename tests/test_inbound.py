"""The inbound pipeline on a real SQLite file: threading, allow-list, loop hygiene, idempotency."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from hypothesis import given
from hypothesis import strategies as st

from bot.enquiries import close_enquiry, get_enquiry
from bot.jobs.digest import build_digest
from bot.jobs.reminders import due_reminders
from bot.jobs.retention import apply_retention
from bot.mail.compose import enquiry_mail, sample_enquiry
from bot.mail.inbound.address import (
    enquiry_token,
    match_reply_address,
    may_answer,
    reply_address,
    token_secret,
)
from bot.mail.inbound.parse import parse_mail
from bot.mail.inbound.process import process_mail
from bot.settings import Settings
from tests.dialogue_support import START, make_settings, open_db
from tests.inbound_support import STAFF, inbox_settings, reply, submit
from tests.smtp_support import CHAT_DELIVERIES

NOW = START + timedelta(hours=3)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return inbox_settings(tmp_path)


@pytest.fixture
def db(settings: Settings) -> sqlite_utils.Database:
    return open_db(settings.database_path)


def _rows(db: sqlite_utils.Database, sql: str, *params: Any) -> list[dict[str, Any]]:
    return list(db.query(sql, list(params)))


# ---------------------------------------------------------------- addresses and tokens


def test_the_token_secret_is_made_once_and_kept(db: sqlite_utils.Database) -> None:
    first = token_secret(db)
    assert len(first) == 32
    assert token_secret(db) == first


def test_reply_address_is_plus_addressed_and_verifiable(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    secret = token_secret(db)
    address = reply_address(settings, secret, "ECCP-0042")
    local, domain = address.split("@")
    assert domain == "example.org" and local.startswith("bot+ECCP-0042.")
    assert match_reply_address(settings, secret, (address.lower(),)) is not None
    found = match_reply_address(settings, secret, ("someone@else.org", address))
    assert found is not None and found.ref == "ECCP-0042" and found.valid
    # Another reference with this token, or a made-up token: not ours.
    forged = address.replace("ECCP-0042", "ECCP-0043")
    found = match_reply_address(settings, secret, (forged,))
    assert found is not None and not found.valid
    assert enquiry_token(b"another secret" * 2, "ECCP-0042") != enquiry_token(secret, "ECCP-0042")


@given(st.from_regex(r"[A-Z]{4}-[0-9]{4}", fullmatch=True))
def test_tokens_differ_per_reference(ref: str) -> None:
    secret = b"k" * 32
    assert enquiry_token(secret, ref) != enquiry_token(
        secret, ref[:-1] + str((int(ref[-1]) + 1) % 10)
    )
    assert len(enquiry_token(secret, ref)) == 16


def test_allow_list(tmp_path: Path) -> None:
    settings = inbox_settings(
        tmp_path, secretariat={"answer_from": ["@segreteria-eccp.eu", "boss@ministero.it"]}
    )
    assert may_answer(settings, "segreteria@example.org")  # the secretariat itself, always
    assert may_answer(settings, "Anna.Bianchi@SEGRETERIA-ECCP.eu")
    assert may_answer(settings, "boss@ministero.it")
    assert not may_answer(settings, "intern@ministero.it")
    assert not may_answer(settings, "x@evil-segreteria-eccp.eu")
    assert not may_answer(settings, "")


# ---------------------------------------------------------------- the enquiry e-mail


def test_enquiry_mail_replies_to_the_bot_when_an_inbox_is_configured(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    enquiry = submit(db, settings)
    raw = _rows(db, "SELECT payload AS raw FROM deliveries WHERE kind = 'enquiry'")[0]["raw"]
    mail = parse_mail(raw)
    message = __import__("email").message_from_bytes(raw)
    assert message["Reply-To"].startswith("bot+ECCP-0001.")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert "enquiries close" not in mail.text and "marks ECCP-0001" not in mail.text
    assert "il bot inoltra la risposta al richiedente" in mail.text
    assert "maria.rossi@example.org" in mail.text  # the applicant's details are still listed
    assert enquiry["ref"] == "ECCP-0001"


def test_without_an_inbox_reply_to_is_the_applicant_and_staff_close_by_hand(
    tmp_path: Path,
) -> None:
    for lang in ("it", "en"):
        settings = make_settings(tmp_path, secretariat={"language": lang})
        message = enquiry_mail(settings, sample_enquiry())
        assert message["Reply-To"].addresses[0].addr_spec == "maria.rossi@example.org"
        assert message["Auto-Submitted"] == "auto-generated"
        text = message.get_body(("plain",)).get_content()
        assert "clusterbot enquiries close ECCP-0001" in text


# ---------------------------------------------------------------- answers


def test_a_secretariat_reply_answers_the_enquiry_and_is_relayed_once(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    enquiry = submit(db, settings)
    raw = reply(db, settings, enquiry)
    result = process_mail(db, settings, raw, source="test", now=NOW)
    assert result.relayed and result.ref == "ECCP-0001"
    row = get_enquiry(db, "ECCP-0001")
    assert row is not None
    assert row["status"] == "answered" and row["answer"] == "Sì, almeno tre partner."
    assert row["answered_by"] == f"email:{STAFF}"
    assert row["answered_at"] == NOW.isoformat(timespec="microseconds")
    (note,) = _rows(db, f"SELECT * FROM {CHAT_DELIVERIES} WHERE kind = 'answer'")
    assert note["chat_id"] == "chat-u1" and note["text"] == "Sì, almeno tre partner."
    (audit,) = _rows(db, "SELECT * FROM audit WHERE event = 'answered'")
    assert audit["actor"] == f"email:{STAFF}"
    (kept,) = _rows(db, "SELECT * FROM inbound_mail")
    assert kept["status"] == "answer" and kept["matched_by"] == "token" and kept["raw"] == raw
    # Reminders stop.
    assert due_reminders(db, settings, NOW + timedelta(days=30)) == []
    # The same mail again (a re-fetch, a second import): nothing new.
    again = process_mail(db, settings, raw, source="test", now=NOW + timedelta(minutes=5))
    assert again.duplicate and not again.relayed
    assert len(_rows(db, f"SELECT * FROM {CHAT_DELIVERIES} WHERE kind = 'answer'")) == 1
    assert len(_rows(db, "SELECT * FROM inbound_mail")) == 1


def test_threading_falls_back_to_in_reply_to_then_subject(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    first = submit(db, settings, "u1")
    second = submit(db, settings, "u2")
    by_thread = reply(db, settings, second, to="segreteria@example.org", message_id="<a@x.eu>")
    result = process_mail(db, settings, by_thread, source="test", now=NOW)
    assert (result.status, result.ref) == ("answer", second["ref"])
    by_subject = reply(
        db,
        settings,
        first,
        to="bot@example.org",
        thread=False,
        message_id="<b@x.eu>",
        subject=f"R: I: [{first['ref'].lower()}] domanda",
    )
    result = process_mail(db, settings, by_subject, source="test", now=NOW)
    assert (result.status, result.ref) == ("answer", first["ref"])
    matched = [r["matched_by"] for r in _rows(db, "SELECT * FROM inbound_mail ORDER BY id")]
    assert matched == ["thread", "subject"]


def test_a_forged_reference_cannot_answer(db: sqlite_utils.Database, settings: Settings) -> None:
    enquiry = submit(db, settings)
    # A stranger writes the reference in the subject.
    stranger = reply(
        db,
        settings,
        enquiry,
        sender="someone@gmail.com",
        to="bot@example.org",
        thread=False,
        message_id="<s1@gmail.com>",
    )
    assert process_mail(db, settings, stranger, source="test", now=NOW).status == "refused"
    # Even staff cannot use a made-up token in our address.
    made_up = reply(
        db,
        settings,
        enquiry,
        to="bot+ECCP-0001.aaaaaaaaaaaaaaaa@example.org",
        thread=False,
        message_id="<s2@x.eu>",
    )
    result = process_mail(db, settings, made_up, source="test", now=NOW)
    assert (result.status, result.reason) == ("refused", "the reply address has a wrong token")
    # A stranger who got hold of the real address is still not on the allow-list.
    leaked = reply(db, settings, enquiry, sender="someone@gmail.com", message_id="<s3@x>")
    assert process_mail(db, settings, leaked, source="test", now=NOW).status == "refused"
    row = get_enquiry(db, "ECCP-0001")
    assert row is not None and row["status"] == "open"
    assert _rows(db, f"SELECT * FROM {CHAT_DELIVERIES} WHERE kind = 'answer'") == []


def test_unmatched_mail_is_kept_not_relayed(db: sqlite_utils.Database, settings: Settings) -> None:
    message = EmailMessage()
    message["From"] = STAFF
    message["To"] = "bot@example.org"
    message["Subject"] = "Hello"
    message["Message-ID"] = "<u1@x.eu>"
    message.set_content("Just saying hello.")
    result = process_mail(db, settings, message.as_bytes(policy=SMTP), source="test", now=NOW)
    assert result.status == "unmatched"


def test_a_closed_enquiry_is_not_answered(db: sqlite_utils.Database, settings: Settings) -> None:
    enquiry = submit(db, settings)
    close_enquiry(db, "ECCP-0001", actor="cli", now=NOW)
    result = process_mail(db, settings, reply(db, settings, enquiry), source="test", now=NOW)
    assert result.status == "ignored" and "closed" in result.reason


def test_attachments_are_mentioned_not_forwarded(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    enquiry = submit(db, settings)
    message = __import__("email").message_from_bytes(
        reply(db, settings, enquiry), _class=EmailMessage, policy=SMTP
    )
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="b.pdf")
    process_mail(db, settings, message.as_bytes(policy=SMTP), source="test", now=NOW)
    (note,) = _rows(db, f"SELECT text FROM {CHAT_DELIVERIES} WHERE kind = 'answer'")
    assert note["text"].startswith("Sì, almeno tre partner.")
    assert "2 allegati" in note["text"] and "a.pdf" not in note["text"]


# ---------------------------------------------------------------- loop hygiene


@pytest.mark.parametrize(
    ("headers", "subject"),
    [
        ({"Auto-Submitted": "auto-replied"}, None),
        ({"X-Autoreply": "yes"}, None),
        ({"Precedence": "bulk"}, None),
        ({"Precedence": "auto_reply"}, None),
        ({}, "Risposta automatica: [ECCP-0001] Nuova richiesta"),
        ({}, "Automatic reply: [ECCP-0001] New enquiry"),
        ({}, "Out of Office: [ECCP-0001] New enquiry"),
        ({}, "Fuori ufficio fino al 3 gennaio"),
    ],
)
def test_auto_replies_are_never_relayed(
    db: sqlite_utils.Database, settings: Settings, headers: dict[str, str], subject: str | None
) -> None:
    enquiry = submit(db, settings)
    raw = reply(
        db, settings, enquiry, body="I am away until Monday.", subject=subject, headers=headers
    )
    result = process_mail(db, settings, raw, source="test", now=NOW)
    assert result.status == "auto_reply"
    row = get_enquiry(db, "ECCP-0001")
    assert row is not None and row["status"] == "open"
    assert _rows(db, f"SELECT * FROM {CHAT_DELIVERIES} WHERE kind = 'answer'") == []


def _dsn(original: bytes) -> bytes:
    """A Postfix-style delivery status notification quoting `original`'s headers."""
    headers = original.split(b"\r\n\r\n")[0]
    return (
        b"From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        b"To: bot@example.org\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"Message-ID: <dsn-1@mx.example.org>\r\n"
        b"Auto-Submitted: auto-replied\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        b"\r\n--B\r\nContent-Type: text/plain\r\n\r\n"
        b"This is the mail system at host mx.example.org. I'm sorry to have to inform you...\r\n"
        b"\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
        b"Final-Recipient: rfc822; segreteria@example.org\r\nAction: failed\r\n"
        b"Status: 5.1.1\r\n"
        b"\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n" + headers + b"\r\n"
        b"\r\n--B--\r\n"
    )


def test_a_bounce_marks_the_mail_failed_and_reports_it(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    submit(db, settings)
    db.execute("UPDATE deliveries SET status = 'sent'")
    raw = _rows(db, "SELECT payload AS raw FROM deliveries WHERE kind = 'enquiry'")[0]["raw"]
    bounce = _dsn(raw)
    parsed = parse_mail(bounce)
    assert parsed.is_bounce and parsed.bounced_ids
    result = process_mail(db, settings, bounce, source="test", now=NOW)
    assert result.status == "bounce"
    (mail,) = _rows(db, "SELECT * FROM deliveries WHERE kind = 'enquiry'")
    assert mail["status"] == "dead" and "bounced" in mail["last_error"]
    assert _rows(db, "SELECT * FROM audit WHERE event = 'mail_failed'")
    assert _rows(db, f"SELECT * FROM {CHAT_DELIVERIES} WHERE kind = 'mail_failed'")
    row = get_enquiry(db, "ECCP-0001")
    assert row is not None and row["status"] == "open"


@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_crashing(raw: bytes) -> None:
    mail = parse_mail(raw)
    assert mail.message_id.startswith("<")


def test_forgetting_the_applicant_erases_the_received_mail(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    from bot.enquiries import forget_user

    enquiry = submit(db, settings)
    process_mail(db, settings, reply(db, settings, enquiry), source="test", now=NOW)
    forget_user(db, "telegram", "u1", now=NOW)
    (kept,) = _rows(db, "SELECT * FROM inbound_mail")
    assert (kept["raw"], kept["answer"], kept["subject"]) == (None, None, None)
    assert kept["status"] == "answer"


def test_retention_expires_unmatched_mail(db: sqlite_utils.Database, settings: Settings) -> None:
    message = EmailMessage()
    message["From"] = "someone@gmail.com"
    message["To"] = "bot@example.org"
    message["Subject"] = "Hello"
    message["Message-ID"] = "<old@x.eu>"
    message.set_content("Hello, my phone is 555 1234.")
    process_mail(db, settings, message.as_bytes(policy=SMTP), source="test", now=NOW)
    apply_retention(db, settings, NOW + settings.privacy.retention + timedelta(days=1))
    (kept,) = _rows(db, "SELECT * FROM inbound_mail")
    assert kept["raw"] is None and kept["sender"] is None


def test_a_reply_naming_several_enquiries_matches_none(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    first, second = submit(db, settings, "u1"), submit(db, settings, "u2")
    raw = reply(
        db,
        settings,
        first,
        to="bot@example.org",
        thread=False,
        subject=f"Re: Reminder: {first['ref']}, {second['ref']}",
    )
    assert process_mail(db, settings, raw, source="test", now=NOW).status == "unmatched"


def _outbox(db: sqlite_utils.Database, kind: str) -> list[dict[str, Any]]:
    return _rows(
        db,
        "SELECT recipient AS rcpt_to, payload AS raw, idempotency_key AS message_id "
        "FROM deliveries WHERE transport = 'smtp' AND kind = ? ORDER BY id",
        kind,
    )


def test_the_answer_reaches_the_applicant_by_e_mail_too(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    enquiry = submit(db, settings)
    process_mail(db, settings, reply(db, settings, enquiry), source="test", now=NOW)
    (mail,) = _outbox(db, "answer")
    assert json_list(mail["rcpt_to"]) == ["maria.rossi@example.org"]
    raw: bytes = mail["raw"]
    parsed = __import__("email").message_from_bytes(raw, policy=SMTP)
    assert "ECCP-0001" in parsed["Subject"]
    text = parsed.get_body(("plain",)).get_content()
    assert "Sì, almeno tre partner." in text
    assert "> How many partners must a consortium have?" in text  # their question, quoted
    # No secretariat address anywhere: not the staff member's, not the secretariat's.
    assert b"segreteria@" not in raw and b"segreteria-eccp" not in raw
    assert parsed["Reply-To"].startswith("bot+ECCP-0001.")
    assert parsed["Auto-Submitted"] == "auto-generated"


def test_the_applicant_replying_re_opens_and_forwards_a_follow_up(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    enquiry = submit(db, settings)
    process_mail(db, settings, reply(db, settings, enquiry), source="test", now=NOW)
    (answer_mail,) = _outbox(db, "answer")
    # The applicant presses Reply on the answer: to the bot's address, threaded under it.
    message = EmailMessage()
    message["From"] = "Maria Rossi <Maria.Rossi@example.org>"
    message["To"] = __import__("email").message_from_bytes(answer_mail["raw"])["Reply-To"]
    message["Subject"] = "Re: [ECCP-0001] La risposta della segreteria"
    message["Message-ID"] = "<follow-1@example.org>"
    message["In-Reply-To"] = answer_mail["message_id"]
    message.set_content(
        "Grazie! E i partner devono essere di paesi diversi?\n\n"
        "Il giorno gio 26 nov 2026 alle ore 13:00 Cluster call bot <noreply@example.org> "
        "ha scritto:\n> Sì, almeno tre partner.\n"
    )
    later = NOW + timedelta(hours=1)
    result = process_mail(db, settings, message.as_bytes(policy=SMTP), source="t", now=later)
    assert (result.status, result.ref) == ("follow_up", "ECCP-0001")
    row = get_enquiry(db, "ECCP-0001")
    assert row is not None and row["status"] == "open" and row["reminder_count"] == 0
    (forwarded,) = _outbox(db, "follow_up")
    assert json_list(forwarded["rcpt_to"]) == ["segreteria@example.org"]
    parsed = __import__("email").message_from_bytes(forwarded["raw"], policy=SMTP)
    assert "[ECCP-0001]" in parsed["Subject"]
    assert parsed["Reply-To"].startswith("bot+ECCP-0001.")
    assert (
        "E i partner devono essere di paesi diversi?" in parsed.get_body(("plain",)).get_content()
    )
    # Reminders start over from the follow-up.
    assert due_reminders(db, settings, later + settings.reminders.first_after)
    assert _rows(db, "SELECT actor FROM audit WHERE event = 'follow_up'") == [
        {"actor": "applicant"}
    ]
    # The secretariat answers the follow-up by replying to it: relayed again.
    again = reply(db, settings, enquiry, body="Sì, di almeno due paesi.", message_id="<r2@x.eu>")
    assert process_mail(db, settings, again, source="t", now=later).status == "answer"
    assert len(_outbox(db, "answer")) == 2


def json_list(value: str) -> list[str]:
    import json

    return list(json.loads(value))


def test_the_digest_moves_an_answer_by_e_mail_to_answered(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    enquiry = submit(db, settings)
    before = build_digest(db, settings, NOW)
    assert [item.ref for item in before.open] == [enquiry["ref"]]
    process_mail(db, settings, reply(db, settings, enquiry), source="test", now=NOW)
    after = build_digest(db, settings, NOW + timedelta(minutes=1))
    assert after.open == ()
    assert [(item.ref, item.answered_by) for item in after.answered] == [
        (enquiry["ref"], f"email:{STAFF}")
    ]
