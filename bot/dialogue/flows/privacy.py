"""The privacy notice (/privacy, and before consent in the form) and /forget."""

from __future__ import annotations

import logging

from bot.dialogue.smalltalk import fold
from bot.dialogue.turn import (
    FORGET_STEP,
    FORM_STEPS,
    NO,
    YES,
    Button,
    Turn,
    command_name,
    folded_text,
    typed_command,
)
from bot.enquiries import forget_user

log = logging.getLogger(__name__)


def notice(turn: Turn) -> str:
    """The privacy notice (GDPR art. 13) in the turn's language, from the [privacy] settings."""
    settings = turn.services.settings
    privacy = settings.privacy
    # Unset or placeholder values fall back to the secretariat in the text (check warns).
    return turn.t(
        "privacy",
        secretariat=settings.secretariat.email,
        retention=turn.services.texts.duration(turn.lang, privacy.retention),
        controller=privacy.value("controller"),
        contact=privacy.value("contact"),
        dpo=privacy.value("dpo"),
        authority=privacy.value("supervisory_authority"),
    )


def show_notice(turn: Turn) -> None:
    """/privacy: the notice, then back to whatever the user was doing."""
    turn.say(notice(turn), title=turn.t("privacy_title"))
    turn.side_trip = True


def ask_forget(turn: Turn) -> None:
    """/forget: ask first. A half-filled form stays until the user confirms ("No, keep")."""
    if turn.step in FORM_STEPS:
        turn.state["resume"] = turn.step
    turn.state["step"] = FORGET_STEP
    prompt(turn)


def prompt(turn: Turn) -> None:
    """The question "erase your data?" with its two buttons."""
    turn.say(
        turn.t("forget_confirm"),
        Button("forget:yes", turn.t("btn_forget_yes")),
        Button("forget:no", turn.t("btn_forget_no")),
    )


def answers_question(turn: Turn) -> bool:
    """Whether the event answers "erase your data?" (anything else keeps the data)."""
    event = turn.event
    if event.kind == "button":
        return event.button_id.startswith("forget:")
    if event.kind == "command":
        return command_name(event.command) == "forget"
    typed = typed_command(event.text)
    if typed is not None:
        return typed[0] == "forget"
    folded = folded_text(event)
    labels = {fold_label(turn, "btn_forget_yes"), fold_label(turn, "btn_forget_no")}
    return folded in YES or folded in NO or folded in labels


def fold_label(turn: Turn, key: str) -> str:
    """A button's label as typed text is compared with it."""
    return fold(turn.t(key))


def press(turn: Turn, button_id: str) -> bool:
    """The "erase?" buttons; False if `button_id` is not one or the question is not open."""
    kind, _, value = button_id.partition(":")
    if kind != "forget" or turn.step != FORGET_STEP or value not in ("yes", "no"):
        return False
    answer(turn, value == "yes")
    return True


def typed_answer(turn: Turn) -> None:
    """A typed reply to "erase?": yes erases, anything else keeps."""
    folded = folded_text(turn.event)
    answer(turn, folded in YES or folded == fold_label(turn, "btn_forget_yes"))


def leave_question(turn: Turn) -> None:
    """Drop the /forget question; back to the form step it interrupted, if any."""
    resume = turn.state.pop("resume", None)
    if resume in FORM_STEPS:
        turn.state["step"] = resume
    else:
        turn.state.pop("step", None)


def answer(turn: Turn, confirmed: bool) -> None:
    """Erase everything about the user, or keep it and go back to what they were doing."""
    if not confirmed:
        leave_question(turn)
        turn.say(turn.t("forget_kept"))
        turn.side_trip = True
        return
    turn.state.pop("step", None)
    event = turn.event
    count = forget_user(
        turn.services.db,
        event.channel,
        event.user_id,
        now=turn.now,
        settings=turn.services.settings,
    )
    # The session row is gone; saving it again would keep the FAQ questions.
    turn.erased = True
    log.info("user data erased: channel=%s enquiries=%d", event.channel, count)
    turn.say(turn.t("forget_done", count=count))
