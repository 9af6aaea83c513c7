"""The persisted conversation: one `sessions` row per (channel, user), and its language."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from bot.dialogue.smalltalk import small_talk
from bot.dialogue.texts import LANGUAGES
from bot.dialogue.turn import FOLLOW_UP_STEP, FORGET_STEP, FORM_STEPS, STEPS, Event
from bot.enquiries.fields import FIELDS
from bot.storage import dumps, from_iso, to_iso

# Free text is matched on its beginning only: a 10 000-character paste is not a question.
MATCH_CHARS = 1000
# The FAQ turns kept for an enquiry's transcript (faq_history): the last ones, each side cut.
HISTORY_SIZE = 10
HISTORY_CHARS = 300
HISTORY_ANSWER_CHARS = 600
# A pause this long ends a conversation: its turns stay out of a later enquiry's transcript.
CONVERSATION_GAP = timedelta(hours=2)


def clean_state(raw: Any) -> dict[str, Any]:
    """A session state with every field of the expected type (old or damaged rows included)."""
    state: dict[str, Any] = raw if isinstance(raw, dict) else {}
    clean: dict[str, Any] = {}
    if state.get("chosen") in LANGUAGES:
        clean["chosen"] = state["chosen"]
    for key in ("seen", "last"):
        if state.get(key) in LANGUAGES:
            clean[key] = state[key]
    if state.get("step") in STEPS:
        clean["step"] = state["step"]
    draft = state.get("draft")
    if isinstance(draft, dict):
        clean["draft"] = {
            key: value for key, value in draft.items() if key in FIELDS and isinstance(value, str)
        }
    if state.get("consent") is True:
        clean["consent"] = True
    if state.get("back") == "confirm":
        clean["back"] = "confirm"
    # The form step a /forget question interrupted, resumed when the user keeps the data.
    if state.get("resume") in FORM_STEPS and clean.get("step") == FORGET_STEP:
        clean["resume"] = state["resume"]
    if isinstance(state.get("pending"), str):
        clean["pending"] = state["pending"]
    # "Did you mean …?" asked about the e-mail address typed (only while at that step).
    if isinstance(state.get("email_hint"), str) and clean.get("step") == "email":
        clean["email_hint"] = state["email_hint"]
    # The enquiry a follow-up is being written about (only at that step).
    if isinstance(state.get("follow_up"), str) and clean.get("step") == FOLLOW_UP_STEP:
        clean["follow_up"] = state["follow_up"]
    faq = state.get("faq")
    if isinstance(faq, list):
        clean["faq"] = [item for item in faq if _is_turn(item)][-HISTORY_SIZE:]
    times = state.get("times")
    if isinstance(times, list):
        clean["times"] = [float(t) for t in times if isinstance(t, int | float)]
    # When the flood notice went out (the sent time of the message that got it).
    if isinstance(state.get("limited_at"), int | float):
        clean["limited_at"] = float(state["limited_at"])
    return clean


def _is_turn(item: Any) -> bool:
    """A recorded FAQ turn; rows from older releases (bare questions, no time) are dropped."""
    if not isinstance(item, dict) or not isinstance(item.get("q"), str):
        return False
    if not isinstance(item.get("a"), str | None) or not isinstance(item.get("faq_id"), str | None):
        return False
    at = item.get("at")
    try:
        return isinstance(at, str) and from_iso(at).tzinfo is not None
    except ValueError:
        return False


def current_turns(turns: Sequence[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The turns of the conversation going on at `now`: those after the last long pause."""
    kept: list[dict[str, Any]] = []
    later = now
    for item in reversed(turns):
        at = from_iso(item["at"])
        if later - at > CONVERSATION_GAP:
            break
        kept.append(item)
        later = at
    kept.reverse()
    return kept


def record_turn(
    state: dict[str, Any], now: datetime, question: str, answer: str | None, faq_id: str | None
) -> None:
    """Remember one FAQ turn (what was asked, what the bot answered) for the transcript."""
    if answer is not None and len(answer) > HISTORY_ANSWER_CHARS:
        answer = answer[: HISTORY_ANSWER_CHARS - 1].rstrip() + "…"
    turn = {"q": question[:HISTORY_CHARS], "a": answer, "faq_id": faq_id, "at": to_iso(now)}
    turns = current_turns(state.get("faq", []), now)
    state["faq"] = [*turns, turn][-HISTORY_SIZE:]


def language_only(state: dict[str, Any], lang: str) -> dict[str, Any]:
    """What survives /forget: the conversation's language, nothing the user wrote."""
    kept = {key: state[key] for key in ("chosen", "seen") if state.get(key) in LANGUAGES}
    return {**kept, "last": lang}


def load(db: sqlite_utils.Database, event: Event) -> dict[str, Any]:
    """The user's session state, cleaned; empty for a new user or an unreadable row."""
    row = db.conn.execute(
        "SELECT state FROM sessions WHERE channel = ? AND user_id = ?",
        (event.channel, event.user_id),
    ).fetchone()
    if row is None:
        return {}
    try:
        return clean_state(json.loads(row[0]))
    except (TypeError, ValueError):
        return {}


def stored_language(db: sqlite_utils.Database, channel: str, user_id: str) -> str | None:
    """The language the conversation last replied in (None for a user without a session)."""
    row = db.conn.execute(
        "SELECT lang FROM sessions WHERE channel = ? AND user_id = ?", (channel, user_id)
    ).fetchone()
    return row[0] if row is not None and row[0] in LANGUAGES else None


def save(
    db: sqlite_utils.Database, event: Event, state: dict[str, Any], lang: str, now: datetime
) -> None:
    """Write the session back (inside the caller's transaction)."""
    db.conn.execute(
        "INSERT INTO sessions (channel, user_id, lang, state, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel, user_id) DO UPDATE SET "
        "lang = excluded.lang, state = excluded.state, updated_at = excluded.updated_at",
        (event.channel, event.user_id, lang, dumps(state), to_iso(now)),
    )


def normalize_lang(value: str | None) -> str | None:
    """'en-GB', 'EN_us', 'it' -> a supported language code, else None."""
    if not value:
        return None
    code = value.strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else None


def reply_language(
    state: dict[str, Any],
    event: Event,
    default: str,
    detect: Callable[[str], str | None],
    guess: Callable[[str], str | None] | None = None,
) -> str:
    """Choice, else the message's clear language (`detect`: the knowledge base's language
    identification), else the last clear one, else the hint, else the language last used,
    else the letters' weak hint (`guess`, "Deadline?" to a new conversation), else the
    configured default."""
    chosen = state.get("chosen")
    if isinstance(chosen, str):
        return chosen
    # Form answers (names, organisations) say nothing reliable about the language.
    if event.kind == "text" and state.get("step") not in STEPS:
        detected = _detect(event.text, detect)
        if detected:
            state["seen"] = detected
            return detected
    seen = state.get("seen")
    if isinstance(seen, str):
        return seen
    last = state.get("last")
    hint = normalize_lang(event.lang_hint)
    if hint:
        return hint
    if isinstance(last, str):
        # The language this conversation last used keeps a channel without hints consistent.
        return last
    if guess is not None and event.kind == "text" and state.get("step") not in STEPS:
        guessed = guess(event.text[:MATCH_CHARS])
        if guessed in LANGUAGES:
            return str(guessed)
    return default


def _detect(text: str, detect: Callable[[str], str | None]) -> str | None:
    chat = small_talk(text)
    if chat.kind is not None and chat.lang in LANGUAGES:
        return chat.lang
    detected = detect(text[:MATCH_CHARS])
    return detected if detected in LANGUAGES else None
