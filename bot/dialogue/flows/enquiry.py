"""The enquiry form: its steps declared once, one handler for buttons and typed answers alike.

A step is data (`STEPS`, at the end): the question it asks (`form_questions`), the draft field
a typed answer fills and its rule (`bot.enquiries.fields`), the values that lead to a more precise
step, what choosing one of its menu options does, and the typed words that choose an option.
`press()` (a button) and `typed()` (a line of text) both become one of the step's choices, else
the field's value, else a nudge: the state machine exists once. `submission` sends the form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as default

from bot.dialogue.flows import form_questions as questions
from bot.dialogue.flows import submission
from bot.dialogue.smalltalk import fold
from bot.dialogue.turn import FORM_STEPS, Reply, Turn, folded_text, typed_number
from bot.enquiries import countries
from bot.enquiries.fields import FIELDS, FieldError, validate_country, validate_field
from bot.mail.address_typos import suggest_address
from bot.mail.smtputf8 import needs_smtputf8, smtputf8_offered


@dataclass(frozen=True)
class Step:
    """One step of the form."""

    name: str
    # The question: text, its menu and title, in the turn's language.
    ask: Callable[[Turn], Reply]
    # The draft field a typed answer fills; None for a step answered by its menu only.
    field: str | None = None
    # The field's rule (raises FieldError); default: `validate_field(field, text)`.
    validate: Callable[[str], str] | None = None
    # Values that are not an answer yet but lead to a more precise step ("Other" -> which?).
    follow_up: Mapping[str, str] = default(default_factory=dict)
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


# ----------------------------------------------------------------- answers


def press(turn: Turn, button_id: str) -> bool:
    """A form button; False if the current step offers no such choice (a stale button)."""
    step = STEPS.get(turn.step or "")
    return step is not None and step.choose is not None and step.choose(turn, button_id)


def typed(turn: Turn) -> None:
    """A typed line at a form step: a menu choice by its words, else the field's value.

    A bare number is a menu choice only where the step shows a menu; elsewhere it is a menu
    number typed by mistake (from an earlier list), not a name or a question.
    """
    step = STEPS[turn.step or ""]
    number = typed_number(turn.event)
    if number is not None:
        _numbered_choice(turn, step, number)
        return
    choice = _typed_choice(turn, step, folded_text(turn.event))
    if choice is not None and step.choose is not None and step.choose(turn, choice):
        return
    if step.field is not None:
        _field_value(turn, step, turn.event.text)
    elif step.unclear is not None:
        step.unclear(turn)
    else:
        prompt(turn)


def _numbered_choice(turn: Turn, step: Step, number: int) -> None:
    menu = step.ask(turn).buttons if step.choose is not None else ()
    choose = step.choose
    if choose is not None and 1 <= number <= len(menu) and choose(turn, menu[number - 1].id):
        return
    turn.say(turn.t("no_option_menu", n=number) if menu else turn.t("no_option_field"))
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
    _field_value(turn, STEPS["country"], country.stored)
    return True


def _choose_consent(turn: Turn, choice: str) -> bool:
    if choice == "consent:no":
        # Nothing is sent without consent; the user may still go back to the summary (and
        # consent after all) or discard the form.
        turn.state.pop("consent", None)
        turn.state["step"] = "declined"
        prompt(turn)
    elif choice == "consent:yes":
        turn.state["consent"] = True
        next_step(turn)
    else:
        return False
    return True


def _choose_declined(turn: Turn, choice: str) -> bool:
    if choice == "declined:back":
        turn.state["step"] = "confirm"
        prompt(turn)
    elif choice == "declined:discard":
        # Discarding stores nothing: the draft leaves the session too.
        cancel_form(turn, "declined")
    else:
        return False
    return True


def cancel_form(turn: Turn, text_key: str = "cancel_done") -> None:
    """Drop the form and everything typed into it; nothing was sent."""
    turn.clear_form()
    turn.state.pop("pending", None)
    turn.say(turn.t(text_key))


def _choose_confirm(turn: Turn, choice: str) -> bool:
    if choice == "send" and not turn.state.get("consent"):
        # Back at the summary after declining: sending needs consent first.
        turn.state["step"] = "consent"
        prompt(turn)
    elif choice == "send":
        if not submission.submit(turn):
            next_step(turn)
    elif choice == "cancel":
        cancel_form(turn)
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


def _choose_email(turn: Turn, choice: str) -> bool:
    """The answer to "did you mean …?": the suggested address, or the one typed."""
    suggestion = turn.state.get("email_hint")
    if choice not in ("mail:fix", "mail:keep") or not isinstance(suggestion, str):
        return False
    turn.state.pop("email_hint", None)
    if choice == "mail:fix":
        turn.draft["email"] = suggestion
    _field_done(turn)
    return True


def _field_value(turn: Turn, step: Step, text: str) -> None:
    name = step.field
    assert name is not None
    try:
        value = step.validate(text) if step.validate else validate_field(name, text)
    except FieldError as exc:
        turn.say(turn.t(f"err_{exc.code}", **exc.params))
        prompt(turn)
        return
    more = step.follow_up.get(value)
    if more is not None:
        # Not an answer yet: ask the more precise question, keeping where to go back to.
        turn.state["step"] = more
        prompt(turn)
        return
    if name == "email" and needs_smtputf8(value):
        services = turn.services
        if not smtputf8_offered(services.db, services.settings):
            turn.say(turn.t("err_email_utf8"))
            prompt(turn)
            return
    turn.draft[name] = value
    if name == "email":
        # A likely typo in the domain is asked about now, not noticed when no answer comes.
        suggestion = suggest_address(value)
        if suggestion is not None:
            turn.state["email_hint"] = suggestion
            turn.state["step"] = "email"
            prompt(turn)
            return
        turn.state.pop("email_hint", None)
    _field_done(turn)


def _field_done(turn: Turn) -> None:
    """A field has its value: back to the summary when editing it, else on to the next."""
    if turn.state.get("back") == "confirm" and turn.state.get("consent"):
        turn.state.pop("back", None)
        turn.state["step"] = "confirm"
        prompt(turn)
        return
    next_step(turn)


def validate_country_name(raw: str) -> str:
    """A country outside the list, by name: any country but 'Other' again."""
    try:
        country = validate_country(raw)
    except FieldError as exc:
        if exc.code == "country_unknown":
            raise FieldError("country_name_unknown") from None
        raise
    if country.code == countries.OTHER_CODE:
        raise FieldError("country_name_unknown")
    return country.stored


# The form, in order: the fields, consent to the privacy notice, the summary (and its editor).
STEPS: Mapping[str, Step] = {
    step.name: step
    for step in (
        Step("name", questions.ask_field("name"), field="name"),
        Step(
            "email",
            questions.ask_email,
            field="email",
            choose=_choose_email,
            words=questions.email_words,
        ),
        Step("organisation", questions.ask_field("organisation"), field="organisation"),
        Step(
            "country",
            questions.ask_country,
            field="country",
            choose=_choose_country,
            follow_up={countries.OTHER.stored: "country_other"},
        ),
        Step(
            "country_other",
            questions.ask_country_name,
            field="country",
            validate=validate_country_name,
        ),
        Step("question", questions.ask_field("question"), field="question"),
        Step(
            "consent",
            questions.ask_consent,
            choose=_choose_consent,
            words=questions.consent_words,
            unclear=questions.consent_nudge,
        ),
        Step(
            "declined",
            questions.ask_declined,
            choose=_choose_declined,
            words=questions.declined_words,
        ),
        Step(
            "confirm", questions.ask_confirm, choose=_choose_confirm, words=questions.confirm_words
        ),
        Step("edit", questions.ask_edit, choose=_choose_edit, words=questions.edit_words),
    )
}
assert set(STEPS) == FORM_STEPS
