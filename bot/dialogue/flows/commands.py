"""Commands and the conversation's own settings: /start, /help, /status, /language, /cancel."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from bot.dialogue.flows import enquiry, faq, follow_up, form_entry, privacy
from bot.dialogue.session import normalize_lang
from bot.dialogue.smalltalk import fold
from bot.dialogue.standing import call_standing, call_title
from bot.dialogue.texts import LANGUAGES
from bot.dialogue.turn import FOLLOW_UP_STEP, FORGET_STEP, FORM_STEPS, Button, Turn
from bot.enquiries import user_enquiries
from bot.knowledge.formatting import format_day
from bot.storage import from_iso

# The commands the engine understands (channels list them in their menus).
COMMANDS = (
    "start",
    "help",
    "faq",
    "contact",
    "status",
    "language",
    "privacy",
    "forget",
    "cancel",
)
LANGUAGE_NAMES = {"italiano": "it", "italian": "it", "english": "en", "inglese": "en"}


def run(turn: Turn, name: str, args: str) -> None:
    """One command by its name (already lower-case, without '/' or '@bot')."""
    args = args.strip()
    if name == "start":
        start(turn, args)
    elif name == "help":
        turn.say(turn.t("help"))
        turn.side_trip = True
    elif name == "faq":
        faq.show_topics(turn)
    elif name == "contact":
        form_entry.open_form(turn)
    elif name == "status":
        status(turn)
    elif name == "language":
        language(turn, args)
    elif name == "privacy":
        privacy.show_notice(turn)
    elif name == "forget":
        privacy.ask_forget(turn)
    elif name == "cancel":
        cancel(turn)
    else:
        shown = re.sub(r"[^\w]", "", name)[:32] or "?"
        turn.say(turn.t("unknown_command", command=shown))


def start(turn: Turn, args: str) -> None:
    """/start: where the call stands, what the bot does, the topics; `/start contact` and
    `/start <faq-id>` go straight on."""
    arg = args.split()[0].lower() if args.split() else ""
    if arg == "contact":
        form_entry.open_form(turn)
        return
    if arg and arg in turn.services.kb.by_id:
        faq.answer_topic(turn, arg)
        return
    if turn.step in FORM_STEPS:
        turn.say(turn.t("welcome_back"))
        enquiry.prompt(turn)
        return
    welcome = turn.t(
        "welcome",
        call_id=turn.services.kb.call.id,
        title=call_title(turn),
        standing=call_standing(turn),
    )
    turn.say(welcome + "\n\n" + turn.t("menu_hint"), *faq.topic_buttons(turn))


def status(turn: Turn) -> None:
    """/status: the user's enquiries and where each stands."""
    services = turn.services
    found = user_enquiries(services.db, turn.event.channel, turn.event.user_id)
    turn.side_trip = True
    if not found:
        turn.say(turn.t("status_none"))
        return
    zone = ZoneInfo(services.settings.timezone)
    lines = [turn.t("status_header")]
    for row in found:
        created = from_iso(row["created_at"]).astimezone(zone)
        lines.append(
            turn.t(
                "status_line",
                ref=row["ref"],
                status=turn.t(f"status_{row['status']}"),
                date=format_day(created, turn.lang),
            )
        )
    # An answered enquiry can be written about again (it re-opens, the secretariat hears).
    buttons = [follow_up.button(turn, row["ref"]) for row in found if row["status"] == "answered"]
    turn.say("\n".join(lines), *buttons)


def language(turn: Turn, args: str) -> None:
    """/language [it|en|italiano|english]: switch, or offer both."""
    words = args.split()
    wanted = normalize_lang(words[0]) if words else None
    if wanted is None and args:
        wanted = LANGUAGE_NAMES.get(fold(args))
    if wanted is not None:
        set_language(turn, wanted)
        return
    turn.say(
        turn.t("language_choose"),
        Button("lang:it", turn.t("btn_lang_it")),
        Button("lang:en", turn.t("btn_lang_en")),
    )


def set_language(turn: Turn, lang: str) -> None:
    """The user's choice: it wins over detection from now on."""
    turn.state["chosen"] = lang
    turn.lang = lang
    turn.say(turn.t("language_set"))
    turn.side_trip = True


def press_language(turn: Turn, button_id: str) -> bool:
    """A language button; False if `button_id` is not one."""
    kind, _, value = button_id.partition(":")
    if kind != "lang" or value not in LANGUAGES:
        return False
    set_language(turn, value)
    return True


def cancel(turn: Turn) -> None:
    """/cancel, the cancel button, a typed "annulla": leave the form or the /forget question."""
    step = turn.step
    turn.state.pop("pending", None)
    if step == FORGET_STEP:
        privacy.answer(turn, False)
    elif step == FOLLOW_UP_STEP:
        follow_up.cancel(turn)
    elif step is None:
        turn.say(turn.t("cancel_nothing"))
    else:
        enquiry.cancel_form(turn)
