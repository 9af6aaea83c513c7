"""Where the call stands, for the greeting: computed from the call's dates at this turn."""

from __future__ import annotations

from datetime import date

from babel.dates import get_timezone_location

from bot.dialogue.turn import Turn
from bot.knowledge.formatting import LOCALES, format_day, format_moment
from bot.knowledge.render import call_status


def call_standing(turn: Turn) -> str:
    """'The call closed on 2 February 2021, 17:00 Brussels time…', or open with days left."""
    call = turn.services.kb.call
    status = call_status(call, turn.now)
    deadline = call.deadline
    opening = call.facts.get("opening")
    opens = opening.value if opening is not None and isinstance(opening.value, date) else None
    zone = getattr(deadline.tzinfo, "key", None)
    city = ""
    if isinstance(zone, str):
        # "Brussels" / "Bruxelles": the deadline is a local time there.
        city = str(get_timezone_location(zone, locale=LOCALES[turn.lang], return_city=True))
    return turn.t(
        "call_standing",
        call_open=status.call_open,
        opening_ahead=status.opening_ahead,
        days_left=status.days_left,
        deadline=format_moment(deadline, turn.lang),
        city=city,
        opening=format_day(opens, turn.lang) if opens is not None else "",
    )


def call_title(turn: Turn) -> str:
    """The call's title in the turn's language, if the call facts have one."""
    title = turn.services.kb.call.facts.get("title")
    return title.display(turn.lang) if title is not None else ""
