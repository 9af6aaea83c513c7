"""Writing again about an answered enquiry in the chat (the engine's follow-up flow)."""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from bot.dialogue.engine import Engine, Event
from bot.enquiries import answer_enquiry, get_enquiry, submit_enquiry
from tests.dialogue_support import START, load_kb, make_settings, open_db

DRAFT = {
    "name": "Maria Rossi",
    "email": "maria.rossi@example.org",
    "organisation": "Cluster Lombardia",
    "country": "Italy",
    "question": "How many partners must a consortium have?",
}


def _setup(tmp_path: Path) -> tuple[sqlite_utils.Database, Engine, str]:
    settings = make_settings(tmp_path, language="en")
    db = open_db(settings.database_path)
    row = submit_enquiry(
        db,
        settings,
        DRAFT,
        channel="telegram",
        user_id="u1",
        chat_id="u1",
        username=None,
        lang="en",
        faq_history=[],
        now=START,
    )
    answer_enquiry(db, row["ref"], "Three.", actor="cli", now=START, settings=settings)
    return db, Engine(db, load_kb(), settings, clock=lambda: START), str(row["ref"])


def _press(engine: Engine, user: str, button: str) -> str:
    replies = engine.handle(
        Event(channel="telegram", user_id=user, kind="button", button_id=button)
    )
    return "\n".join(reply.text for reply in replies)


def _say(engine: Engine, user: str, text: str) -> str:
    replies = engine.handle(Event(channel="telegram", user_id=user, kind="text", text=text))
    return "\n".join(reply.text for reply in replies)


def _follow_ups(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT COUNT(*) FROM deliveries WHERE kind = 'follow_up'").fetchone()[0])


def test_status_offers_to_write_again_and_the_text_reaches_the_secretariat(
    tmp_path: Path,
) -> None:
    db, engine, ref = _setup(tmp_path)
    status = engine.handle(
        Event(channel="telegram", user_id="u1", kind="command", command="status")
    )
    assert any(b.id == f"fu:{ref}" for reply in status for b in reply.buttons)
    assert ref in _press(engine, "u1", f"fu:{ref}")
    assert ref in _say(engine, "u1", "And may the partners be in one region?")
    assert _follow_ups(db) == 1
    row = get_enquiry(db, ref)
    assert row is not None and row["status"] == "open"
    # The next message is an ordinary question again.
    _say(engine, "u1", "What is the budget?")
    assert _follow_ups(db) == 1


def test_cancel_sends_nothing_and_others_cannot_write_about_it(tmp_path: Path) -> None:
    db, engine, ref = _setup(tmp_path)
    assert "no longer applies" in _press(engine, "intruder", f"fu:{ref}")
    _press(engine, "u1", f"fu:{ref}")
    _say(engine, "u1", "/cancel")
    _say(engine, "u1", "And may the partners be in one region?")
    assert _follow_ups(db) == 0
    row = get_enquiry(db, ref)
    assert row is not None and row["status"] == "answered"


def test_a_too_short_follow_up_is_asked_again(tmp_path: Path) -> None:
    db, engine, ref = _setup(tmp_path)
    _press(engine, "u1", f"fu:{ref}")
    again = _say(engine, "u1", "ok")
    assert ref in again and _follow_ups(db) == 0
