"""The dialogue engine: one event plus the persisted session in, replies out (no channel code).

The engine is the turn loop only: it cleans the event, loads the session in one transaction,
applies the per-user flood limit, routes the event to one flow (`bot.dialogue.flows`), then
stores the session and the FAQ log. What to say is decided by the flows.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import datetime

import sqlite_utils

from bot.dialogue import session
from bot.dialogue.flows import commands, enquiry, faq, follow_up, form_entry, privacy
from bot.dialogue.flows.commands import COMMANDS
from bot.dialogue.texts import Texts, default_texts
from bot.dialogue.turn import (
    CANCEL_WORDS,
    FOLLOW_UP_STEP,
    FORGET_STEP,
    FORM_STEPS,
    MAX_BUTTON_ID_BYTES,
    Button,
    Event,
    EventKind,
    Reply,
    Services,
    Turn,
    command_name,
    folded_text,
    typed_command,
)
from bot.enquiries.fields import clean_surrogates
from bot.knowledge import KnowledgeBase
from bot.settings import Settings
from bot.storage import DatabaseFileLost, to_iso, transaction, utc_now

__all__ = ["COMMANDS", "MAX_BUTTON_ID_BYTES", "Button", "Engine", "Event", "EventKind", "Reply"]

log = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 60.0


class Engine:
    """Turns events into replies; all conversation state lives in the `sessions` table."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        kb: KnowledgeBase,
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
        on_commit: Callable[[], None] | None = None,
        texts: Texts | None = None,
        rate_limit: bool = True,
    ) -> None:
        self.db = db
        self.kb = kb
        self.settings = settings
        self.clock = clock
        self.on_commit = on_commit
        self.texts = texts or default_texts()
        # A channel with one trusted local user (the terminal) may switch the flood guard off.
        self.rate_limit = rate_limit

    def handle(self, event: Event) -> list[Reply]:
        """Process one event and return its replies; never raises for any input.

        There is at least one reply, except for the messages of a flood after its notice."""
        lang: str = self.settings.language
        try:
            event = _sanitize(event)
            replies, committed, lang = self._run(event)
        except DatabaseFileLost:
            # Said once, in one line, by whoever opened the database (the app stops).
            return [Reply(self.texts.get(lang, "error"))]
        except Exception as exc:
            # The traceback names code, not values, so no personal data reaches the log.
            log.error(
                "dialogue error %s:\n%s",
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            return [Reply(self.texts.get(lang, "error"))]
        if committed and self.on_commit is not None:
            try:
                self.on_commit()
            except Exception as exc:
                # The enquiry is stored; delivery will be retried by the scheduler anyway.
                log.error("on_commit failed: %s", type(exc).__name__)
        if replies is None:
            return []
        return replies or [Reply(self.texts.get(lang, "empty"))]

    def _run(self, event: Event) -> tuple[list[Reply] | None, bool, str]:
        """Replies (None: a flood's message dropped without a word), whether something was
        committed for delivery, and the reply language."""
        now = self.clock()
        # Read and write the session in one transaction, so no other writer slips in between.
        with transaction(self.db):
            state = session.load(self.db, event)
            lang = session.reply_language(
                state, event, self.settings.language, self.kb.detect, self.kb.guess
            )
            # Rate limit first: a refused message reaches neither the matcher nor the
            # secretariat, and is not stored. The window runs on when each message was sent
            # (never later than now), so a backlog handled late cannot slip through.
            sent = min(event.sent_at, now) if event.sent_at is not None else now
            stamp = sent.timestamp()
            recent = [t for t in state.get("times", []) if stamp - RATE_WINDOW_SECONDS < t <= stamp]
            limit = self.settings.limits.messages_per_minute
            if self.rate_limit and len(recent) >= limit:
                # A flood logs one line, then a count (bot/logs.py).
                log.info("rate limited: channel=%s", event.channel, extra={"collapse": True})
                noticed = state.get("limited_at")
                if noticed is not None and stamp - RATE_WINDOW_SECONDS < noticed <= stamp:
                    # Told once in this window already: the rest is dropped in silence.
                    return None, False, lang
                state["limited_at"] = stamp
                session.save(self.db, event, state, lang, now)
                return [Reply(self.texts.get(lang, "rate_limited", limit=limit))], False, lang
            state["times"] = [*recent, stamp]
            services = Services(self.db, self.kb, self.settings, self.texts)
            turn = Turn(services=services, event=event, state=state, lang=lang, now=now)
            route(turn)
            for faq_lang, faq_id, score in turn.faq_log:
                self.db.conn.execute(
                    "INSERT INTO faq_log (at, lang, faq_id, score) VALUES (?, ?, ?, ?)",
                    (to_iso(now), faq_lang, faq_id, score),
                )
            if turn.erased:
                # Everything the user wrote is gone; the next reply keeps their language.
                state = session.language_only(turn.state, turn.lang)
                session.save(self.db, event, state, turn.lang, now)
            else:
                turn.state["last"] = turn.lang
                session.save(self.db, event, turn.state, turn.lang, now)
        return turn.replies, turn.committed, turn.lang


def route(turn: Turn) -> None:
    """Hand the event to the flow it belongs to; after a side trip, remind of the open form."""
    if turn.step == FORGET_STEP and not privacy.answers_question(turn):
        # Anything but an answer to "erase your data?" keeps the data: the form the question
        # interrupted (if any) comes back, and the event is handled as usual.
        if _is_cancel(turn):
            privacy.answer(turn, False)
        else:
            privacy.leave_question(turn)
            _route_event(turn)
    else:
        _route_event(turn)
    if turn.side_trip:
        enquiry.resume(turn)


def _route_event(turn: Turn) -> None:
    event = turn.event
    if event.kind == "command":
        commands.run(turn, command_name(event.command), event.args)
    elif event.kind == "button":
        _press(turn, event.button_id)
    elif (typed := typed_command(event.text)) is not None:
        commands.run(turn, *typed)
    elif folded_text(event) in CANCEL_WORDS:
        # Typed "annulla" / "cancel" / "stop": like /cancel, in a form or not.
        commands.cancel(turn)
    elif turn.step in FORM_STEPS:
        enquiry.typed(turn)
    elif turn.step == FORGET_STEP:
        # Only answers reach here (see route).
        privacy.typed_answer(turn)
    elif turn.step == FOLLOW_UP_STEP:
        follow_up.typed(turn)
    else:
        faq.free_text(turn, event.text)


def _press(turn: Turn, button_id: str) -> None:
    if button_id == "contact":
        form_entry.open_form(turn)
    elif button_id == "cancel":
        commands.cancel(turn)
    elif not (
        faq.press(turn, button_id)
        or (button_id == "fwd" and form_entry.forward_pending(turn))
        or commands.press_language(turn, button_id)
        or enquiry.press(turn, button_id)
        or privacy.press(turn, button_id)
        or follow_up.press(turn, button_id)
    ):
        # A button from an old message: say so, and ask again what is being asked now.
        turn.say(turn.t("stale_button"))
        reprompt(turn)


def reprompt(turn: Turn) -> None:
    """Ask again what the conversation is waiting for, if anything."""
    if turn.step in FORM_STEPS:
        enquiry.prompt(turn)
    elif turn.step == FORGET_STEP:
        privacy.prompt(turn)
    elif turn.step == FOLLOW_UP_STEP:
        follow_up.prompt(turn)


def _is_cancel(turn: Turn) -> bool:
    event = turn.event
    if event.kind == "button":
        return event.button_id == "cancel"
    if event.kind == "command":
        return command_name(event.command) == "cancel"
    typed = typed_command(event.text)
    if typed is not None:
        return typed[0] == "cancel"
    return folded_text(event) in CANCEL_WORDS


def _sanitize(event: Event) -> Event:
    kind: EventKind = event.kind if event.kind in ("text", "button", "command") else "text"
    return Event(
        channel=clean_surrogates(str(event.channel))[:32] or "unknown",
        user_id=clean_surrogates(str(event.user_id))[:64],
        kind=kind,
        text=clean_surrogates(event.text or ""),
        command=clean_surrogates(event.command or ""),
        args=clean_surrogates(event.args or ""),
        button_id=clean_surrogates(event.button_id or "")[:64],
        lang_hint=event.lang_hint,
        chat_id=None if event.chat_id is None else clean_surrogates(str(event.chat_id)),
        username=None if event.username is None else clean_surrogates(str(event.username)),
        sent_at=event.sent_at if isinstance(event.sent_at, datetime) else None,
    )
