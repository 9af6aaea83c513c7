"""Sending the completed form: the enquiry is stored with its mail in one transaction."""

from __future__ import annotations

import logging
from typing import Any

from bot.dialogue.session import HISTORY_CHARS, current_turns
from bot.dialogue.turn import Turn
from bot.enquiries import EnquiryError, EnquiryLimitError, submit_enquiry
from bot.enquiries.fields import FIELDS, FieldError, validate_field

log = logging.getLogger(__name__)


def history(turn: Turn) -> list[dict[str, Any]]:
    """This conversation's FAQ turns before the enquiry, without the question being forwarded
    (it is the enquiry's question, unless the bot answered it)."""
    question = turn.draft.get("question", "")[:HISTORY_CHARS].strip()
    return [
        {key: item[key] for key in ("q", "a", "faq_id")}
        for item in current_turns(turn.state.get("faq", []), turn.now)
        if item["faq_id"] is not None or item["q"].strip() != question
    ]


def submit(turn: Turn) -> bool:
    """Submit the draft; False if it was damaged (its invalid fields are dropped to ask again)."""
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
            faq_history=history(turn),
            now=turn.now,
        )
    except EnquiryLimitError:
        turn.clear_form()
        turn.say(turn.t("daily_limit", limit=services.settings.enquiries.max_per_day))
        return True
    except EnquiryError:
        # Only a damaged draft gets here: drop what is invalid so that it is asked again.
        draft = turn.draft
        for name in FIELDS:
            try:
                validate_field(name, draft.get(name, ""))
            except FieldError:
                draft.pop(name, None)
        return False
    turn.clear_form()
    turn.state.pop("faq", None)
    turn.state.pop("pending", None)
    turn.committed = True
    log.info("enquiry submitted: ref=%s channel=%s", row["ref"], event.channel)
    turn.say(
        turn.t(
            "submitted",
            ref=row["ref"],
            email=row["email"],
            channel=event.channel,
            acknowledged=services.settings.enquiries.acknowledge,
        )
    )
    return True
