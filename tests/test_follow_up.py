"""Writing again about an answered enquiry in the chat (the engine's follow-up flow)."""

from __future__ import annotations

from pathlib import Path

import sqlite_utils
from telegram_harness import ADMIN_CHAT, ADMIN_USER, running_bot, until
from telegram_harness import make_settings as make_telegram_settings
from telegram_standin import BotApiStandIn

from bot.dialogue.engine import Engine, Event
from bot.enquiries import answer_enquiry, get_enquiry, submit_enquiry
from tests.dialogue_support import START, load_kb, make_settings, open_db
from tests.test_telegram import admin_post, fill_form

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


async def test_a_follow_up_is_posted_in_the_admin_chat_and_answered_from_there(
    tmp_path: Path, api: BotApiStandIn
) -> None:
    """The applicant writes again about an answered enquiry: besides the e-mail, a new post
    in the admin chat (with the reference and the text); replying to that post answers."""
    settings = make_telegram_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        user = 3001
        ref = await fill_form(h, user, "Can a cluster from Norway lead the consortium?")
        post = await admin_post(h, ref)
        before = len(api.bot_messages(user))
        api.push_message(ADMIN_CHAT, "Yes, it can.", user_id=ADMIN_USER, reply_to=post)
        (answer,) = (await h.messages(user, before + 1))[before:]
        assert get_enquiry(h.app.db, ref)["status"] == "answered"

        await h.press(answer, f"fu:{ref}")
        posts_before = len(api.bot_messages(ADMIN_CHAT))
        await h.say(user, "And may the partners be in one region only?")
        follow_up = await until(
            lambda: next(
                (
                    m
                    for m in api.bot_messages(ADMIN_CHAT)[posts_before:]
                    if "one region only" in m.text
                ),
                None,
            ),
            what="the follow-up's post in the admin chat",
        )
        assert ref in follow_up.text and "Ada Rossi" in follow_up.text
        assert get_enquiry(h.app.db, ref)["status"] == "open"
        mails = h.app.db.execute(
            "SELECT COUNT(*) FROM deliveries WHERE kind = 'follow_up' AND transport = 'smtp'"
        ).fetchone()[0]
        assert mails == 1

        # The secretariat answers by replying to the follow-up's post.
        before = len(api.bot_messages(user))
        api.push_message(
            ADMIN_CHAT, "Yes: one region is enough.", user_id=ADMIN_USER, reply_to=follow_up
        )
        relayed = (await h.messages(user, before + 1))[before:]
        assert relayed[0].text.startswith(ref) and "one region is enough" in relayed[0].text
        row = get_enquiry(h.app.db, ref)
        assert row["status"] == "answered" and row["answer"] == "Yes: one region is enough."

        # Erasure edits the follow-up's post too: the applicant's words leave the chat.
        await h.say(user, "/forget")
        forget = api.bot_messages(user)[-1]
        await h.press(forget, "forget:yes")
        await until(
            lambda: (
                "one region only"
                not in next(
                    m.text
                    for m in api.bot_messages(ADMIN_CHAT)
                    if m.message_id == follow_up.message_id
                )
            ),
            what="the follow-up's post erased",
        )
