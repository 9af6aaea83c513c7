"""Enquiry domain rules: the one-transaction submit, answer, close, forget, queries, export."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

import bot.enquiries.submit
import bot.mail.compose
from bot import enquiries
from bot.enquiries import (
    EnquiryError,
    EnquiryLimitError,
    answer_enquiry,
    close_enquiry,
    count_created_since,
    export_csv,
    export_jsonl,
    forget_user,
    get_enquiry,
    list_enquiries,
    normalize_ref,
    submit_enquiry,
    user_enquiries,
)
from bot.settings import Settings
from bot.storage import to_iso
from tests.dialogue_support import START, iter_texts, make_settings, open_db, rows
from tests.smtp_support import CHAT_DELIVERIES

DRAFT = {
    "name": "Maria Rossi",
    "email": "maria.rossi@example.org",
    "organisation": "Cluster Lombardia",
    "country": "Italy",
    "question": "How many partners must a consortium have?",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with an admin chat, so submit also queues the admin post."""
    return make_settings(tmp_path, telegram={"admin_chat_id": -1001234})


@pytest.fixture
def db(settings: Settings) -> sqlite_utils.Database:
    """A migrated database file."""
    return open_db(settings.database_path)


def _submit(
    db: sqlite_utils.Database, settings: Settings, user: str = "u1", **changes: Any
) -> dict[str, Any]:
    now = changes.pop("now", START)
    return submit_enquiry(
        db,
        settings,
        {**DRAFT, **changes},
        channel="telegram",
        user_id=user,
        chat_id=f"chat-{user}",
        username="maria_r",
        lang="it",
        faq_history=["Qual è il budget?", "Quando scade?"],
        now=now,
    )


def test_submit_writes_enquiry_ref_outbox_admin_post_and_audit(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    row = _submit(db, settings)
    assert row["ref"] == "ECCP-0001"
    (enquiry,) = rows(db, "enquiries")
    assert enquiry["ref"] == "ECCP-0001" and enquiry["status"] == "open"
    assert enquiry["created_at"] == START.isoformat(timespec="microseconds")
    assert json.loads(enquiry["faq_history"]) == ["Qual è il budget?", "Quando scade?"]
    assert (enquiry["chat_id"], enquiry["username"], enquiry["lang"]) == (
        "chat-u1",
        "maria_r",
        "it",
    )
    mail, receipt = [row for row in rows(db, "deliveries") if row["transport"] == "smtp"]
    assert (mail["kind"], mail["enquiry_id"], mail["status"]) == ("enquiry", 1, "queued")
    # The applicant's acknowledgement, queued with it (enquiries.acknowledge, on by default).
    assert (receipt["kind"], receipt["enquiry_id"]) == ("acknowledgement", 1)
    assert json.loads(receipt["recipient"]) == ["maria.rossi@example.org"]
    assert mail["transport"] == "smtp"
    assert json.loads(mail["recipient"]) == ["segreteria@example.org"]
    assert b"Reply-To: Maria Rossi <maria.rossi@example.org>" in mail["payload"]
    (note,) = chat_rows(db)
    assert (note["channel"], note["kind"], note["chat_id"], note["text"]) == (
        "telegram",
        "enquiry_posted",
        "-1001234",
        "",  # rendered by the channel from the enquiry
    )
    (audit,) = rows(db, "audit")
    assert (audit["event"], audit["actor"], audit["ref"]) == ("created", "applicant", "ECCP-0001")
    assert "Maria" not in (audit["detail"] or "") and "example.org" not in (audit["detail"] or "")


def test_no_admin_post_without_an_admin_chat(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, enquiries={"reference_prefix": "CLX9"})
    db = open_db(settings.database_path)
    assert _submit(db, settings)["ref"] == "CLX9-0001"
    assert chat_rows(db) == []


def test_refs_are_padded_to_four_digits_and_grow_beyond(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    assert enquiries.format_ref("ECCP", 42) == "ECCP-0042"
    assert enquiries.format_ref("ECCP", 12345) == "ECCP-12345"
    assert normalize_ref(" eccp-42 ") == "ECCP-0042"
    _submit(db, settings)
    assert get_enquiry(db, "eccp-1") is not None
    assert get_enquiry(db, "ECCP-0002") is None


def test_submit_refuses_an_invalid_draft(db: sqlite_utils.Database, settings: Settings) -> None:
    with pytest.raises(EnquiryError):
        _submit(db, settings, email="not an address")
    with pytest.raises(EnquiryError):
        _submit(db, settings, name="Maria\r\nBcc: x@example.org")
    assert rows(db, "enquiries") == [] and rows(db, "deliveries") == []


def test_submit_enforces_the_daily_limit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, enquiries={"max_per_day": 2})
    db = open_db(settings.database_path)
    _submit(db, settings)
    _submit(db, settings, now=START + timedelta(hours=1))
    with pytest.raises(EnquiryLimitError):
        _submit(db, settings, now=START + timedelta(hours=2))
    _submit(db, settings, user="someone-else", now=START + timedelta(hours=2))
    _submit(db, settings, now=START + timedelta(days=1, minutes=1))
    assert count_created_since(db, "telegram", "u1", START) == 3


# ---------------------------------------------------------------- one transaction


def _assert_all_or_nothing(db: sqlite_utils.Database) -> None:
    enquiry_ids = {row["id"] for row in rows(db, "enquiries")}
    outbox_ids = {row["enquiry_id"] for row in rows(db, "deliveries")}
    audit_ids = {row["enquiry_id"] for row in rows(db, "audit")}
    assert enquiry_ids == outbox_ids == audit_ids
    assert all(row["ref"] for row in rows(db, "enquiries"))


@pytest.mark.parametrize("failing", ["enquiry_mail", "mail_delivery", "audit", "notification"])
def test_a_failure_between_statements_leaves_nothing_partial(
    db: sqlite_utils.Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    _submit(db, settings)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed between statements")

    if failing in ("enquiry_mail", "mail_delivery"):
        monkeypatch.setattr(bot.mail.compose, failing, boom)
    elif failing == "audit":
        monkeypatch.setattr(bot.enquiries.submit, "record_audit", boom)
    else:
        monkeypatch.setattr(bot.enquiries.submit, "chat_delivery", boom)
    with pytest.raises(RuntimeError):
        _submit(db, settings, now=START + timedelta(minutes=1))
    assert len(rows(db, "enquiries")) == 1
    _assert_all_or_nothing(db)
    # The connection is usable afterwards and the next id is not skipped into a gap.
    monkeypatch.undo()
    assert _submit(db, settings, now=START + timedelta(minutes=2))["ref"] == "ECCP-0002"


def test_a_killed_process_mid_submit_leaves_nothing_partial(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    db = open_db(settings.database_path)
    _submit(db, settings)
    db.close()
    # A real kill: the process exits without unwinding right after the enquiry INSERT.
    script = textwrap.dedent(
        f"""
        import os
        import bot.mail.compose
        from bot import enquiries
        from bot.settings.load import settings_from_mapping
        from bot.storage import open_database
        from tests.dialogue_support import START
        from tests.test_enquiries import DRAFT

        real = bot.mail.compose.enquiry_mail
        def dying(settings, row, *args, **kwargs):
            real(settings, row, *args, **kwargs)
            os._exit(9)
        bot.mail.compose.enquiry_mail = dying
        settings = settings_from_mapping({{"data_dir": {str(tmp_path)!r}}})
        db = open_database(settings.database_path)
        enquiries.submit_enquiry(
            db, settings, DRAFT, channel="console", user_id="k", chat_id="k",
            username=None, lang="en", faq_history=[], now=START,
        )
        """
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=root, timeout=60, check=False)
    assert done.returncode == 9
    db = open_db(settings.database_path)
    assert len(rows(db, "enquiries")) == 1
    _assert_all_or_nothing(db)


# ---------------------------------------------------------------- answer and close


def test_answer_queues_the_reply_for_the_applicant(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    _submit(db, settings)
    later = START + timedelta(hours=3)
    row = answer_enquiry(db, "ECCP-0001", "  Three partners.  ", actor="admin:42", now=later)
    assert (row["status"], row["answer"], row["answered_by"]) == (
        "answered",
        "Three partners.",
        "admin:42",
    )
    answer = [n for n in chat_rows(db) if n["kind"] == "answer"]
    assert [(n["channel"], n["chat_id"], n["text"]) for n in answer] == [
        ("telegram", "chat-u1", "Three partners.")
    ]
    assert [a["event"] for a in rows(db, "audit")] == ["created", "answered"]
    # A follow-up answer is allowed; a closed enquiry is not answered.
    answer_enquiry(db, "eccp-1", "And one more thing.", actor="admin:42", now=later)
    close_enquiry(db, "ECCP-0001", actor="cli", now=later)
    with pytest.raises(EnquiryError, match="already closed"):
        answer_enquiry(db, "ECCP-0001", "Too late", actor="admin:42", now=later)
    with pytest.raises(EnquiryError, match="no enquiry"):
        answer_enquiry(db, "ECCP-0999", "Who?", actor="admin:42", now=later)
    with pytest.raises(EnquiryError, match="empty"):
        answer_enquiry(db, "ECCP-0001", "   ", actor="admin:42", now=later)


def test_the_attachments_note_is_in_the_applicants_language(
    db: sqlite_utils.Database, settings: Settings
) -> None:
    _submit(db, settings)  # an Italian applicant
    _submit(db, settings, user="u2")
    db.conn.execute("UPDATE enquiries SET lang = 'en' WHERE ref = 'ECCP-0002'")
    answer_enquiry(db, "ECCP-0001", "Tre.", actor="cli", now=START, attachments=2)
    answer_enquiry(db, "ECCP-0002", "Three.", actor="cli", now=START, attachments=1)
    texts = {n["chat_id"]: n["text"] for n in chat_rows(db) if n["kind"] == "answer"}
    assert texts["chat-u1"] == (
        "Tre.\n\nL'e-mail della segreteria su ECCP-0001 conteneva anche 2 allegati, "
        "che non vengono inoltrati qui."
    )
    assert texts["chat-u2"] == (
        "Three.\n\nThe secretariat's e-mail about ECCP-0002 also had 1 attachment, "
        "which is not forwarded here."
    )


def test_the_enquiry_rules_import_nothing_above_them(repo_root: Path) -> None:
    """Imports run one way, down: bot/enquiries never imports the dialogue, the channels,
    the commands or the app, not even inside a function."""
    import ast

    above = ("bot.dialogue", "bot.channels", "bot.commands", "bot.cli", "bot.app")
    found = []
    for path in sorted((repo_root / "bot" / "enquiries").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [
                f"{path.name}: {name}"
                for name in names
                if any(name == top or name.startswith(top + ".") for top in above)
            ]
    assert found == []


def test_the_enquiry_texts_have_no_problems(tmp_path: Path) -> None:
    from bot.enquiries.texts import check_texts

    assert check_texts() == []
    (tmp_path / "it.yaml").write_text("answer_attachments: '{{ who }}'\nextra: x\n", "utf-8")
    problems = check_texts(tmp_path)
    assert any("en.yaml: cannot read it" in p for p in problems)
    assert any("unknown variable(s) who" in p for p in problems)
    assert any("unknown key 'extra'" in p for p in problems)


def test_mark_answered_without_relaying(db: sqlite_utils.Database, settings: Settings) -> None:
    _submit(db, settings)
    row = enquiries.mark_answered(db, "ECCP-0001", actor="admin:5", now=START)
    assert (row["status"], row["answer"], row["answered_by"]) == ("answered", None, "admin:5")
    assert [n["kind"] for n in chat_rows(db)] == ["enquiry_posted"]
    with pytest.raises(EnquiryError, match="already answered"):
        enquiries.mark_answered(db, "ECCP-0001", actor="admin:5", now=START)


def test_close_with_a_note_once(db: sqlite_utils.Database, settings: Settings) -> None:
    _submit(db, settings)
    row = close_enquiry(db, "ECCP-0001", actor="cli", now=START, note="duplicate of ECCP-0000")
    assert (row["status"], row["closed_by"], row["close_note"]) == (
        "closed",
        "cli",
        "duplicate of ECCP-0000",
    )
    audit = rows(db, "audit")[-1]
    assert audit["event"] == "closed" and "duplicate" not in audit["detail"]
    with pytest.raises(EnquiryError, match="already closed"):
        close_enquiry(db, "ECCP-0001", actor="cli", now=START)
    with pytest.raises(EnquiryError, match="no enquiry"):
        close_enquiry(db, "NOPE-1", actor="cli", now=START)


# ---------------------------------------------------------------- forget


def test_forget_user_erases_across_tables(db: sqlite_utils.Database, settings: Settings) -> None:
    _submit(db, settings)
    second = _submit(db, settings, question="Is Kosovo a COSME country for this call?")
    answer_enquiry(db, second["ref"], "Yes, Kosovo takes part.", actor="admin:1", now=START)
    # The first mail went out already; the second is still pending.
    db.conn.execute("UPDATE deliveries SET status = 'sent' WHERE enquiry_id = 1")
    db.conn.execute(
        "INSERT INTO sessions (channel, user_id, lang, state, updated_at) VALUES "
        "('telegram', 'u1', 'it', '{\"draft\": {\"name\": \"Maria Rossi\"}}', 'x')"
    )
    db.conn.commit()
    other = _submit(
        db,
        settings,
        user="u2",
        name="Luigi Verdi",
        email="luigi@example.org",
        question="Can a university be the coordinator?",
    )
    assert forget_user(db, "telegram", "u1", now=START + timedelta(days=1)) == 2
    texts = "\n".join(iter_texts(db))
    for secret in ("Maria Rossi", "maria.rossi@example.org", "partners must", "Kosovo takes"):
        assert secret not in texts
    assert "Qual è il budget?" in texts  # u2's own history is untouched
    assert "Luigi Verdi" in texts and get_enquiry(db, other["ref"]) is not None
    erased = [row for row in rows(db, "enquiries") if row["erased_at"]]
    assert [row["ref"] for row in erased] == ["ECCP-0001", "ECCP-0002"]
    assert all(row["user_id"] is None and row["faq_history"] == "[]" for row in erased)
    # The erased enquiries' unsent mail is withdrawn, and no mail keeps their bytes.
    # (Each enquiry has its secretariat mail and the applicant's acknowledgement.)
    mails = [
        (row["enquiry_id"], row["status"], row["payload"])
        for row in rows(db, "deliveries")
        if row["transport"] == "smtp" and row["kind"] == "enquiry"
    ]
    assert [mail[:2] for mail in mails] == [(1, "sent"), (2, "cancelled"), (3, "queued")]
    assert mails[0][2] is None and mails[1][2] is None and mails[2][2] is not None
    receipts = [
        (r["enquiry_id"], r["status"])
        for r in rows(db, "deliveries")
        if r["transport"] == "smtp" and r["kind"] != "enquiry"
    ]
    assert receipts == [(1, "sent"), (2, "cancelled"), (3, "queued")]
    assert rows(db, "sessions") == []
    events = [(a["event"], a["ref"]) for a in rows(db, "audit") if a["event"] == "erased"]
    assert events == [("erased", "ECCP-0001"), ("erased", "ECCP-0002"), ("erased", None)]
    assert user_enquiries(db, "telegram", "u1") == []
    # The open one is closed, so reminders and digests stop; the answered one stays answered.
    first, second_row = erased
    assert first["status"] == "closed" and first["closed_by"] == "applicant"
    assert first["closed_at"] == to_iso(START + timedelta(days=1))
    assert first["close_note"] == "erased at the applicant's request"
    assert second_row["status"] == "answered"
    assert [r["ref"] for r in list_enquiries(db, "open")] == [other["ref"]]
    closed = [a for a in rows(db, "audit") if a["event"] == "closed"]
    assert [(a["ref"], a["actor"]) for a in closed] == [("ECCP-0001", "applicant")]


def _journal(db: sqlite_utils.Database, update_id: int, payload: Any, handled: bool) -> None:
    db.conn.execute(
        "INSERT INTO updates (update_id, payload, received_at, handled_at) VALUES (?, ?, ?, ?)",
        (update_id, json.dumps(payload), "2026-11-26T09:00:00Z", "x" if handled else None),
    )


def test_forget_user_purges_the_telegram_update_journal(db: sqlite_utils.Database) -> None:
    me = {"id": 4242, "first_name": "Maria", "username": "maria_r"}
    other = {"id": 777, "first_name": "Luigi"}
    private = {"id": 4242, "type": "private"}
    _journal(
        db, 1, {"update_id": 1, "message": {"from": me, "chat": private, "text": "Budget?"}}, True
    )
    _journal(
        db,
        2,
        {"update_id": 2, "edited_message": {"from": me, "chat": private, "text": "Budget!!"}},
        True,
    )
    _journal(
        db,
        3,
        {
            "update_id": 3,
            "callback_query": {
                "from": me,
                "data": "fwd",
                "message": {"chat": private, "text": "Maria Rossi?"},
            },
        },
        True,
    )
    # Someone else, in a group where the user also writes: not theirs.
    group = {"id": -100, "type": "group"}
    _journal(db, 4, {"update_id": 4, "message": {"from": other, "chat": group, "text": "Hi"}}, True)
    # Not handled yet: still to be processed, so it stays (pruned once handled).
    _journal(db, 5, {"update_id": 5, "message": {"from": me, "chat": private, "text": "x"}}, False)
    _journal(db, 6, "not json at all {", True)
    db.conn.commit()
    assert forget_user(db, "telegram", "4242", now=START) == 0
    assert [r["update_id"] for r in rows(db, "updates")] == [4, 5, 6]
    (audit,) = rows(db, "audit")
    detail = json.loads(audit["detail"])
    assert detail["updates"] == 3 and detail["enquiries"] == 0
    assert "4242" not in json.dumps(audit) and "Maria" not in json.dumps(audit)
    # Another channel's user with the same id leaves the Telegram journal alone.
    assert forget_user(db, "console", "777", now=START) == 0
    assert [r["update_id"] for r in rows(db, "updates")] == [4, 5, 6]


def test_forget_a_user_without_enquiries_is_audited_anonymously(
    db: sqlite_utils.Database,
) -> None:
    assert forget_user(db, "console", "nobody", now=START) == 0
    (audit,) = rows(db, "audit")
    assert audit["event"] == "erased" and audit["enquiry_id"] is None
    assert "nobody" not in json.dumps(audit)


# ---------------------------------------------------------------- queries and export


def test_list_and_user_queries(db: sqlite_utils.Database, settings: Settings) -> None:
    _submit(db, settings, user="a", now=START + timedelta(minutes=2))
    _submit(db, settings, user="b", now=START + timedelta(minutes=1))
    close_enquiry(db, "ECCP-0001", actor="cli", now=START)
    assert [r["ref"] for r in list_enquiries(db, "all")] == ["ECCP-0002", "ECCP-0001"]
    assert [r["ref"] for r in list_enquiries(db, "open")] == ["ECCP-0002"]
    assert [r["ref"] for r in list_enquiries(db, "closed")] == ["ECCP-0001"]
    assert list_enquiries(db, "answered") == []
    with pytest.raises(EnquiryError):
        list_enquiries(db, "bogus")
    assert [r["ref"] for r in user_enquiries(db, "telegram", "a")] == ["ECCP-0001"]


def test_export_csv_and_jsonl(db: sqlite_utils.Database, settings: Settings) -> None:
    _submit(db, settings)
    _submit(
        db, settings, organisation='=HYPERLINK("http://evil")', question='Line 1\nLine 2, "quoted"'
    )
    buffer = io.StringIO()
    assert export_jsonl(list_enquiries(db), buffer) == 2
    records = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert records[1]["question"] == 'Line 1\nLine 2, "quoted"'
    assert records[0]["faq_history"] == ["Qual è il budget?", "Quando scade?"]
    buffer = io.StringIO()
    assert export_csv(list_enquiries(db), buffer) == 2
    table = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert table[1]["question"] == 'Line 1\nLine 2, "quoted"'
    assert table[1]["organisation"].startswith("'=")
    assert table[0]["faq_history"] == "Qual è il budget? | Quando scade?"


def chat_rows(db: Any) -> list[dict[str, Any]]:
    """The chat messages queued (Telegram, console), oldest first."""
    return [dict(row) for row in db.query(f"SELECT * FROM {CHAT_DELIVERIES} ORDER BY id")]
