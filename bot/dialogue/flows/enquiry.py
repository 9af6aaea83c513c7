"""The enquiry form: its steps declared once, one handler for buttons and typed answers alike.

A step is data (`STEPS`, at the end): the question it asks (`form_questions`), the draft field
a typed answer fills (validated by `bot.dialogue.form`), what choosing one of its menu options
does, and the typed words that choose an option. `press()` (a button) and `typed()` (a line of
text) both become one of the step's choices, else the field's value, else a nudge: the state
machine exists once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.dialogue import countries
from bot.dialogue.flows import form_questions as questions
from bot.dialogue.form import FIELDS, FieldError, validate_field
from bot.dialogue.session import current_turns
from bot.dialogue.smalltalk import fold
from bot.dialogue.turn import FORM_STEPS, Reply, Turn, folded_text
from bot.enquiries import EnquiryError, EnquiryLimitError, count_created_since, submit_enquiry

log = logging.getLogger(__name__)

ENQUIRY_WINDOW = timedelta(days=1)
# How much of each earlier question the enquiry's faq_history compares with the question.
HISTORY_CHARS = 300


@dataclass(frozen=True)
class Step:
    """One step of the form."""

    name: str
    # The question: text, its menu and title, in the turn's language.
    ask: Callable[[Turn], Reply]
    # The draft field a typed answer fills, validated; None for a step answered by its menu.
    field: str | None = None
    # What choosing a menu option (a button id) does; False if the step offers no such option.
    choose: Callable[[Turn, str], bool] | None = None
    # Typed words (folded) that choose a menu option, besides the options' own labels.
    words: Callable[[Turn], Mapping[str, str]] = questions.no_words
    # What typed text that is neither a choice nor a field value gets (default: ask again).
    unclear: Callable[[Turn], None] | None = None


# ----------------------------------------------------------------- moving through the form


def prompt(turn: Turn) -> None:
    """Ask the current step's question (again, or for the first time)."""
    step = STEPS.get(turn.step or "")
    if step is None:
        return
    if step.name == "confirm" and any(not turn.draft.get(name) for name in FIELDS):
        # A damaged session: ask for what is missing instead of sending half a form.
        next_step(turn)
        return
    turn.replies.append(step.ask(turn))


def next_step(turn: Turn) -> None:
    """Move to the first missing field, then consent, then the summary; ask for it."""
    missing = [name for name in FIELDS if not turn.draft.get(name)]
    if missing:
        turn.state["step"] = missing[0]
    elif not turn.state.get("consent"):
        turn.state["step"] = "consent"
    else:
        turn.state["step"] = "confirm"
    turn.state.pop("back", None)
    prompt(turn)


def resume(turn: Turn) -> None:
    """After a side trip (help, a topic), remind the user of the form waiting for them."""
    if turn.step in FORM_STEPS:
        turn.say(turn.t("form_continue"))
        prompt(turn)


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


# ----------------------------------------------------------------- answers


def press(turn: Turn, button_id: str) -> bool:
    """A form button; False if the current step offers no such choice (a stale button)."""
    step = STEPS.get(turn.step or "")
    return step is not None and step.choose is not None and step.choose(turn, button_id)


def typed(turn: Turn) -> None:
    """A typed line at a form step: a menu choice by its words, else the field's value."""
    step = STEPS[turn.step or ""]
    choice = _typed_choice(turn, step, folded_text(turn.event))
    if choice is not None and step.choose is not None and step.choose(turn, choice):
        return
    if step.field is not None:
        _field_value(turn, step.field, turn.event.text)
    elif step.unclear is not None:
        step.unclear(turn)
    else:
        prompt(turn)


def _typed_choice(turn: Turn, step: Step, folded: str) -> str | None:
    if step.choose is None or not folded:
        return None
    labels = {fold(button.label): button.id for button in step.ask(turn).buttons}
    return {**step.words(turn), **labels}.get(folded)


def _choose_country(turn: Turn, choice: str) -> bool:
    kind, _, code = choice.partition(":")
    if kind != "c":
        return False
    if code == "more":
        turn.say(turn.t("ask_country_all"), *questions.country_menu(turn, everything=True))
        return True
    country = countries.by_code(code)
    if country is None:
        turn.say(turn.t("stale_button"))
        prompt(turn)
        return True
    _field_value(turn, "country", country.stored)
    return True


def _choose_consent(turn: Turn, choice: str) -> bool:
    if choice == "consent:no":
        # Declining stores nothing: the draft leaves the session too.
        turn.clear_form()
        turn.state.pop("pending", None)
        turn.say(turn.t("declined"))
    elif choice == "consent:yes":
        turn.state["consent"] = True
        next_step(turn)
    else:
        return False
    return True


def _choose_confirm(turn: Turn, choice: str) -> bool:
    if choice == "send":
        _submit(turn)
    elif choice == "edit":
        turn.state["step"] = "edit"
        prompt(turn)
    else:
        return False
    return True


def _choose_edit(turn: Turn, choice: str) -> bool:
    kind, _, name = choice.partition(":")
    if kind == "edit" and name in FIELDS:
        turn.state["step"] = name
        turn.state["back"] = "confirm"
    elif choice == "back":
        turn.state["step"] = "confirm"
    else:
        return False
    prompt(turn)
    return True


def _field_value(turn: Turn, name: str, text: str) -> None:
    try:
        value = validate_field(name, text)
    except FieldError as exc:
        turn.say(turn.t(f"err_{exc.code}", **exc.params))
        prompt(turn)
        return
    turn.draft[name] = value
    if turn.state.get("back") == "confirm" and turn.state.get("consent"):
        turn.state.pop("back", None)
        turn.state["step"] = "confirm"
        prompt(turn)
        return
    next_step(turn)


# ----------------------------------------------------------------- submission


def _history(turn: Turn) -> list[dict[str, Any]]:
    """This conversation's FAQ turns before the enquiry, without the question being forwarded
    (it is the enquiry's question, unless the bot answered it)."""
    question = turn.draft.get("question", "")[:HISTORY_CHARS].strip()
    return [
        {key: item[key] for key in ("q", "a", "faq_id")}
        for item in current_turns(turn.state.get("faq", []), turn.now)
        if item["faq_id"] is not None or item["q"].strip() != question
    ]


def _submit(turn: Turn) -> None:
    event = turn.event
    services = turn.services
    try:
        row = submit_enquiry(
            services.db,
            services.settings,
            turn.draft,
            channel=event.channel,
            user_id=event.user_id,
            chat_id=event.chat_id or event.user_id,
            username=event.username,
            lang=turn.lang,
            faq_history=_history(turn),
            now=turn.now,
        )
    except EnquiryLimitError:
        turn.clear_form()
        turn.say(turn.t("daily_limit", limit=services.settings.enquiries.max_per_day))
        return
    except EnquiryError:
        # Only a damaged draft gets here: drop what is invalid and ask for it again.
        draft = turn.draft
        for name in FIELDS:
            try:
                validate_field(name, draft.get(name, ""))
            except FieldError:
                draft.pop(name, None)
        next_step(turn)
        return
    turn.clear_form()
    turn.state.pop("faq", None)
    turn.state.pop("pending", None)
    turn.committed = True
    log.info("enquiry submitted: ref=%s channel=%s", row["ref"], event.channel)
    turn.say(turn.t("submitted", ref=row["ref"], email=row["email"], channel=event.channel))


# The form, in order: the fields, consent to the privacy notice, the summary (and its editor).
STEPS: Mapping[str, Step] = {
    step.name: step
    for step in (
        Step("name", questions.ask_field("name"), field="name"),
        Step("email", questions.ask_field("email"), field="email"),
        Step("organisation", questions.ask_field("organisation"), field="organisation"),
        Step("country", questions.ask_country, field="country", choose=_choose_country),
        Step("question", questions.ask_field("question"), field="question"),
        Step(
            "consent",
            questions.ask_consent,
            choose=_choose_consent,
            words=questions.consent_words,
            unclear=questions.consent_nudge,
        ),
        Step(
            "confirm", questions.ask_confirm, choose=_choose_confirm, words=questions.confirm_words
        ),
        Step("edit", questions.ask_edit, choose=_choose_edit, words=questions.edit_words),
    )
}
assert set(STEPS) == FORM_STEPS
