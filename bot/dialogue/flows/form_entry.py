"""Entering the enquiry form: /contact, the contact button, and "forward my question"."""

from __future__ import annotations

from datetime import timedelta

from bot.dialogue.flows.enquiry import next_step, resume
from bot.dialogue.turn import FORM_STEPS, Turn
from bot.enquiries import count_created_since
from bot.enquiries.fields import FieldError, validate_field

ENQUIRY_WINDOW = timedelta(days=1)


def open_form(turn: Turn, prefill: str | None = None) -> None:
    """/contact, the contact and forward buttons: start the form, or continue the one open."""
    if turn.step in FORM_STEPS:
        if prefill is not None:
            _prefill(turn, prefill)
        resume(turn)
        return
    turn.clear_form()
    if _limit_reached(turn):
        turn.say(turn.t("daily_limit", limit=turn.services.settings.enquiries.max_per_day))
        return
    intro = turn.t("form_intro")
    if prefill is not None and _prefill(turn, prefill):
        intro += "\n" + turn.t("question_kept")
    turn.say(intro)
    next_step(turn)


def forward_pending(turn: Turn) -> bool:
    """The "forward my question" button: the form, with the unanswered question kept."""
    pending = turn.state.pop("pending", None)
    if not isinstance(pending, str):
        return False
    open_form(turn, prefill=pending)
    return True


def _prefill(turn: Turn, text: str) -> bool:
    try:
        turn.draft["question"] = validate_field("question", text)
    except FieldError:
        return False
    return True


def _limit_reached(turn: Turn) -> bool:
    event = turn.event
    done = count_created_since(
        turn.services.db, event.channel, event.user_id, turn.now - ENQUIRY_WINDOW
    )
    return done >= turn.services.settings.enquiries.max_per_day
