"""What every flow works with: the event, the reply types, one turn's state and its helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlite_utils

from bot.dialogue.smalltalk import fold
from bot.dialogue.texts import Texts
from bot.enquiries.fields import FIELDS
from bot.knowledge import KnowledgeBase
from bot.settings import Settings

EventKind = Literal["text", "button", "command"]
# The steps a session can be at: the form's own, and the /forget question.
FORM_STEPS = frozenset({*FIELDS, "country_other", "consent", "declined", "confirm", "edit"})
FORGET_STEP = "forget"
# Writing again about an answered enquiry (bot.dialogue.flows.follow_up).
FOLLOW_UP_STEP = "follow_up"
STEPS = FORM_STEPS | {FORGET_STEP, FOLLOW_UP_STEP}
MAX_BUTTON_ID_BYTES = 40

# A bare option number ("14", "3.", "2)"): what a user types for an entry of a menu.
_OPTION_NUMBER = re.compile(r"^#?(\d{1,4})[.)]?$")
_COMMAND_TEXT = re.compile(r"^/([A-Za-z][A-Za-z0-9_]{0,31})(?:@\w+)?(?:\s+(.*))?$", re.DOTALL)

YES = frozenset(
    {"yes", "y", "si", "ok", "okay", "sure", "accetto", "acconsento", "i agree", "agree"}
)
NO = frozenset({"no", "n", "non acconsento", "i don t agree", "decline", "rifiuto"})
CANCEL_WORDS = frozenset({"cancel", "annulla", "stop"})


@dataclass(frozen=True)
class Button:
    """A choice offered with a reply: `id` comes back in a button event, `label` is shown."""

    id: str
    label: str


@dataclass(frozen=True)
class Reply:
    """Plain text (adapters escape it), optional buttons, and a title shown bold where possible."""

    text: str
    buttons: tuple[Button, ...] = ()
    title: str | None = None


@dataclass(frozen=True)
class Event:
    """One input from a (channel, user): free text, a button press or a command."""

    channel: str
    user_id: str
    kind: EventKind
    text: str = ""
    command: str = ""
    args: str = ""
    button_id: str = ""
    lang_hint: str | None = None
    chat_id: str | None = None
    username: str | None = None
    # When the user sent it, if the channel knows (Telegram's message date): the flood
    # limit counts by it, so a backlog handled late is judged by when it was written.
    sent_at: datetime | None = None


@dataclass(frozen=True)
class Services:
    """What the flows read and write through: storage, the call's knowledge, settings, texts."""

    db: sqlite_utils.Database
    kb: KnowledgeBase
    settings: Settings
    texts: Texts


@dataclass
class Turn:
    """One event being handled: the session state, the reply language and pending writes."""

    services: Services
    event: Event
    state: dict[str, Any]
    lang: str
    now: datetime
    replies: list[Reply] = field(default_factory=list)
    faq_log: list[tuple[str, str | None, float]] = field(default_factory=list)
    committed: bool = False
    erased: bool = False
    # Set by a side trip (help, a topic, /status...): the form waiting is reminded after it.
    side_trip: bool = False

    def t(self, key: str, **values: Any) -> str:
        """The text `key` in this turn's language."""
        return self.services.texts.get(self.lang, key, **values)

    def say(self, text: str, *buttons: Button, title: str | None = None) -> None:
        """Add a reply."""
        self.replies.append(Reply(text=text, buttons=tuple(buttons), title=title))

    @property
    def step(self) -> str | None:
        """The step the conversation is at, or None outside the form and /forget."""
        step = self.state.get("step")
        return step if isinstance(step, str) else None

    @property
    def draft(self) -> dict[str, str]:
        """The form's values so far (created empty on first use)."""
        draft = self.state.setdefault("draft", {})
        assert isinstance(draft, dict)
        return draft

    def clear_form(self) -> None:
        """Forget the form: its step, values, consent and where to go back to."""
        for key in ("step", "draft", "consent", "back", "resume", "email_hint"):
            self.state.pop(key, None)


def command_name(command: str) -> str:
    """'/Start@SomeBot' -> 'start'."""
    return command.strip().lstrip("/").split("@", 1)[0].lower()


def typed_command(text: str) -> tuple[str, str] | None:
    """A command typed as text ('/status', '/start@bot faq'): (name, args), else None."""
    match = _COMMAND_TEXT.match(text.strip())
    if match is None:
        return None
    return command_name(match.group(1)), (match.group(2) or "").strip()


def folded_text(event: Event) -> str:
    """The typed text as compared with words and labels (its first 200 characters, folded)."""
    return fold(event.text[:200])


def typed_number(event: Event) -> int | None:
    """The option number the user typed as their whole message, else None."""
    if event.kind != "text":
        return None
    match = _OPTION_NUMBER.match(event.text.strip())
    return int(match.group(1)) if match else None
