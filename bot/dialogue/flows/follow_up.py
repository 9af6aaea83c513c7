"""Writing again about an answered enquiry: the text goes to the secretariat with its reference.

Offered as a button under a relayed answer and in /status; the enquiry re-opens
(`bot.enquiries.follow_up_enquiry`).
"""

from __future__ import annotations

from bot.dialogue.turn import FOLLOW_UP_STEP, Button, Turn
from bot.enquiries import EnquiryError, follow_up_enquiry, get_enquiry
from bot.enquiries.fields import LIMITS

PREFIX = "fu:"


def button(turn: Turn, ref: str) -> Button:
    """The "write again about REF" button."""
    return Button(f"{PREFIX}{ref}", turn.t("btn_follow_up", ref=ref))


def _own_enquiry(turn: Turn, ref: str) -> dict[str, object] | None:
    row = get_enquiry(turn.services.db, ref)
    event = turn.event
    if row is None or row["erased_at"] is not None:
        return None
    if (row["channel"], row["user_id"]) != (event.channel, event.user_id):
        return None
    return row


def press(turn: Turn, button_id: str) -> bool:
    """The button: ask for the message. False when it is not one, or not the user's enquiry."""
    if not button_id.startswith(PREFIX):
        return False
    row = _own_enquiry(turn, button_id[len(PREFIX) :])
    if row is None:
        return False
    turn.clear_form()
    turn.state["step"] = FOLLOW_UP_STEP
    turn.state["follow_up"] = str(row["ref"])
    prompt(turn)
    return True


def prompt(turn: Turn) -> None:
    """Ask for the text of the follow-up."""
    ref = str(turn.state.get("follow_up") or "")
    turn.say(turn.t("follow_up_ask", ref=ref), Button("cancel", turn.t("btn_cancel")))


def typed(turn: Turn) -> None:
    """The follow-up's text: forwarded to the secretariat, the enquiry re-opened."""
    ref = str(turn.state.get("follow_up") or "")
    text = turn.event.text.strip()
    low, high = LIMITS["question"]
    if len(text) < low:
        turn.say(turn.t("err_too_short", min=low))
        prompt(turn)
        return
    if len(text) > high:
        turn.say(turn.t("err_too_long", max=high, length=len(text)))
        prompt(turn)
        return
    row = _own_enquiry(turn, ref)
    leave(turn)
    if row is None:
        turn.say(turn.t("stale_button"))
        return
    try:
        follow_up_enquiry(
            turn.services.db,
            turn.services.settings,
            ref,
            text,
            via=turn.event.channel,
            now=turn.now,
        )
    except EnquiryError:
        turn.say(turn.t("stale_button"))
        return
    turn.committed = True
    turn.say(turn.t("follow_up_sent", ref=ref))


def leave(turn: Turn) -> None:
    """Drop the follow-up question."""
    turn.state.pop("step", None)
    turn.state.pop("follow_up", None)


def cancel(turn: Turn) -> None:
    """/cancel while writing a follow-up: nothing is sent."""
    leave(turn)
    turn.say(turn.t("cancel_done"))
