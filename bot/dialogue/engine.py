"""The dialogue engine: one event plus the persisted session in, replies out (no channel code)."""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlite_utils

from bot.dialogue import countries
from bot.dialogue.form import FIELDS, LIMITS, FieldError, clean_surrogates, validate_field
from bot.dialogue.smalltalk import fold, small_talk
from bot.dialogue.texts import LANGUAGES, Texts, default_texts
from bot.enquiries import (
    EnquiryError,
    EnquiryLimitError,
    count_created_since,
    forget_user,
    submit_enquiry,
    user_enquiries,
)
from bot.knowledge import KnowledgeBase
from bot.knowledge.formatting import format_day
from bot.knowledge.match import detect_language
from bot.settings import Settings
from bot.storage import dumps, from_iso, to_iso, transaction, utc_now

log = logging.getLogger(__name__)

EventKind = Literal["text", "button", "command"]
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
FORM_STEPS = frozenset({*FIELDS, "consent", "confirm", "edit"})
STEPS = FORM_STEPS | {"forget"}
# Free text is matched on its beginning only: a 10 000-character paste is not a question.
MATCH_CHARS = 1000
# Recent FAQ questions kept for the enquiry's faq_history, and how much of each.
HISTORY_SIZE = 10
HISTORY_CHARS = 300
RATE_WINDOW_SECONDS = 60.0
ENQUIRY_WINDOW = timedelta(days=1)
MAX_BUTTON_ID_BYTES = 40

_COMMAND_TEXT = re.compile(r"^/([A-Za-z][A-Za-z0-9_]{0,31})(?:@\w+)?(?:\s+(.*))?$", re.DOTALL)

# FAQ topics left out of the topic menu: `contact` would sit next to the form's own button
# ("Write to the secretariat"); its answer is still found by free text and /start contact.
MENU_HIDDEN = frozenset({"contact"})
YES = frozenset(
    {"yes", "y", "si", "ok", "okay", "sure", "accetto", "acconsento", "i agree", "agree"}
)
NO = frozenset({"no", "n", "non acconsento", "i don t agree", "decline", "rifiuto"})
SEND_WORDS = frozenset({"send", "invia", "confirm", "conferma", "yes", "si", "ok"})
EDIT_WORDS = frozenset({"edit", "modifica", "change", "change something", "cambia"})
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


@dataclass
class _Turn:
    """What one event works with: the session state, the reply language and pending writes."""

    event: Event
    state: dict[str, Any]
    lang: str
    now: datetime
    replies: list[Reply] = field(default_factory=list)
    faq_log: list[tuple[str, str | None, float]] = field(default_factory=list)
    committed: bool = False
    erased: bool = False


_fold = fold


def _clean_state(raw: Any) -> dict[str, Any]:
    """A session state with every field of the expected type (old or damaged rows included)."""
    state: dict[str, Any] = raw if isinstance(raw, dict) else {}
    clean: dict[str, Any] = {}
    if state.get("chosen") in LANGUAGES:
        clean["chosen"] = state["chosen"]
    for key in ("seen", "last"):
        if state.get(key) in LANGUAGES:
            clean[key] = state[key]
    if state.get("step") in STEPS:
        clean["step"] = state["step"]
    draft = state.get("draft")
    if isinstance(draft, dict):
        clean["draft"] = {
            key: value for key, value in draft.items() if key in FIELDS and isinstance(value, str)
        }
    if state.get("consent") is True:
        clean["consent"] = True
    if state.get("back") == "confirm":
        clean["back"] = "confirm"
    # The form step a /forget question interrupted, resumed when the user keeps the data.
    if state.get("resume") in FORM_STEPS and clean.get("step") == "forget":
        clean["resume"] = state["resume"]
    if isinstance(state.get("pending"), str):
        clean["pending"] = state["pending"]
    faq = state.get("faq")
    if isinstance(faq, list):
        clean["faq"] = [item for item in faq if isinstance(item, str)][-HISTORY_SIZE:]
    times = state.get("times")
    if isinstance(times, list):
        clean["times"] = [float(t) for t in times if isinstance(t, int | float)]
    return clean


def _normalize_lang(value: str | None) -> str | None:
    if not value:
        return None
    code = value.strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else None


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

    # ----------------------------------------------------------------- entry point

    def handle(self, event: Event) -> list[Reply]:
        """Process one event and return at least one reply; never raises for any input."""
        lang: str = self.settings.language
        try:
            event = self._sanitize(event)
            replies, committed, lang = self._run(event)
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
        return replies or [Reply(self.texts.get(lang, "empty"))]

    @staticmethod
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
        )

    def _run(self, event: Event) -> tuple[list[Reply], bool, str]:
        now = self.clock()
        # Read and write the session in one transaction, so no other writer slips in between.
        with transaction(self.db):
            state = self._load(event)
            lang = self._language(state, event)
            # Rate limit first: a refused message reaches neither the matcher nor the
            # secretariat, and is not stored.
            stamp = now.timestamp()
            times = state.get("times", [])
            recent = [t for t in times if stamp - RATE_WINDOW_SECONDS < t <= stamp]
            limit = self.settings.limits.messages_per_minute
            if self.rate_limit and len(recent) >= limit:
                log.info("rate limited: channel=%s", event.channel)
                return [Reply(self.texts.get(lang, "rate_limited", limit=limit))], False, lang
            state["times"] = [*recent, stamp]
            turn = _Turn(event=event, state=state, lang=lang, now=now)
            self._dispatch(turn)
            for faq_lang, faq_id, score in turn.faq_log:
                self.db.conn.execute(
                    "INSERT INTO faq_log (at, lang, faq_id, score) VALUES (?, ?, ?, ?)",
                    (to_iso(now), faq_lang, faq_id, score),
                )
            if not turn.erased:
                turn.state["last"] = turn.lang
                self._save(event, turn.state, turn.lang, now)
        return turn.replies, turn.committed, turn.lang

    # ----------------------------------------------------------------- session

    def _load(self, event: Event) -> dict[str, Any]:
        row = self.db.conn.execute(
            "SELECT state FROM sessions WHERE channel = ? AND user_id = ?",
            (event.channel, event.user_id),
        ).fetchone()
        if row is None:
            return {}
        try:
            return _clean_state(json.loads(row[0]))
        except (TypeError, ValueError):
            return {}

    def _save(self, event: Event, state: dict[str, Any], lang: str, now: datetime) -> None:
        self.db.conn.execute(
            "INSERT INTO sessions (channel, user_id, lang, state, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel, user_id) DO UPDATE SET "
            "lang = excluded.lang, state = excluded.state, updated_at = excluded.updated_at",
            (event.channel, event.user_id, lang, dumps(state), to_iso(now)),
        )

    def _language(self, state: dict[str, Any], event: Event) -> str:
        """Choice, else the message's clear language, else the last clear one, else the hint,
        else the language last used, else the configured default."""
        chosen = state.get("chosen")
        if isinstance(chosen, str):
            return chosen
        # Form answers (names, organisations) say nothing reliable about the language.
        if event.kind == "text" and state.get("step") not in STEPS:
            detected = self._detect(event.text)
            if detected:
                state["seen"] = detected
                return detected
        seen = state.get("seen")
        if isinstance(seen, str):
            return seen
        last = state.get("last")
        # The language this conversation last used keeps a channel without hints consistent.
        fallback = last if isinstance(last, str) else self.settings.language
        return _normalize_lang(event.lang_hint) or fallback

    @staticmethod
    def _detect(text: str) -> str | None:
        chat = small_talk(text)
        if chat.kind is not None and chat.lang in LANGUAGES:
            return chat.lang
        detected = detect_language(text[:MATCH_CHARS])
        return detected if detected in LANGUAGES else None

    # ----------------------------------------------------------------- helpers

    def _t(self, turn: _Turn, key: str, **values: Any) -> str:
        return self.texts.get(turn.lang, key, **values)

    def _say(self, turn: _Turn, text: str, *buttons: Button, title: str | None = None) -> None:
        turn.replies.append(Reply(text=text, buttons=tuple(buttons), title=title))

    def _topic_buttons(self, turn: _Turn) -> list[Button]:
        buttons = [
            Button(f"faq:{faq_id}", label)
            for faq_id, label in self.kb.topics(turn.lang)
            if faq_id not in MENU_HIDDEN and len(f"faq:{faq_id}".encode()) <= MAX_BUTTON_ID_BYTES
        ]
        buttons.append(Button("contact", self._t(turn, "btn_contact")))
        return buttons

    def _step(self, turn: _Turn) -> str | None:
        step = turn.state.get("step")
        return step if isinstance(step, str) else None

    def _draft(self, turn: _Turn) -> dict[str, str]:
        draft = turn.state.setdefault("draft", {})
        assert isinstance(draft, dict)
        return draft

    def _clear_form(self, turn: _Turn) -> None:
        for key in ("step", "draft", "consent", "back", "resume"):
            turn.state.pop(key, None)

    # ----------------------------------------------------------------- dispatch

    def _dispatch(self, turn: _Turn) -> None:
        event = turn.event
        if self._step(turn) == "forget" and not self._answers_forget(turn):
            # Anything but an answer to "erase your data?" keeps the data: the form the
            # question interrupted (if any) comes back, and the event is handled as usual.
            if self._is_cancel(turn):
                self._forget(turn, False)
                return
            self._leave_forget(turn)
        if event.kind == "command":
            self._command(turn, event.command, event.args)
        elif event.kind == "button":
            self._button(turn, event.button_id)
        else:
            match = _COMMAND_TEXT.match(event.text.strip())
            if match:
                self._command(turn, match.group(1), match.group(2) or "")
            else:
                self._text(turn, event.text)

    def _answers_forget(self, turn: _Turn) -> bool:
        event = turn.event
        if event.kind == "button":
            return event.button_id.startswith("forget:")
        if event.kind == "command":
            return self._command_name(event.command) == "forget"
        match = _COMMAND_TEXT.match(event.text.strip())
        if match:
            return self._command_name(match.group(1)) == "forget"
        folded = _fold(event.text[:200])
        return folded in YES or folded in NO or folded in self._labels(turn, "btn_forget_")

    def _is_cancel(self, turn: _Turn) -> bool:
        event = turn.event
        if event.kind == "button":
            return event.button_id == "cancel"
        if event.kind == "command":
            return self._command_name(event.command) == "cancel"
        match = _COMMAND_TEXT.match(event.text.strip())
        if match:
            return self._command_name(match.group(1)) == "cancel"
        return _fold(event.text[:200]) in CANCEL_WORDS

    def _labels(self, turn: _Turn, prefix: str) -> set[str]:
        return {_fold(self._t(turn, f"{prefix}{end}")) for end in ("yes", "no")}

    def _leave_forget(self, turn: _Turn) -> None:
        """Drop the /forget question; back to the form step it interrupted, if any."""
        resume = turn.state.pop("resume", None)
        if resume in FORM_STEPS:
            turn.state["step"] = resume
        else:
            turn.state.pop("step", None)

    @staticmethod
    def _command_name(command: str) -> str:
        return command.strip().lstrip("/").split("@", 1)[0].lower()

    def _command(self, turn: _Turn, command: str, args: str) -> None:
        name = self._command_name(command)
        args = args.strip()
        if name == "start":
            self._start(turn, args)
        elif name == "help":
            self._say(turn, self._t(turn, "help"))
            self._resume(turn)
        elif name == "faq":
            self._say(turn, self._t(turn, "faq_menu"), *self._topic_buttons(turn))
            self._resume(turn)
        elif name == "contact":
            self._open_form(turn, prefill=None)
        elif name == "status":
            self._status(turn)
            self._resume(turn)
        elif name == "language":
            self._language_command(turn, args)
        elif name == "privacy":
            self._privacy(turn)
            self._resume(turn)
        elif name == "forget":
            # The half-filled form stays until the user confirms: "No, keep" resumes it.
            step = self._step(turn)
            if step in FORM_STEPS:
                turn.state["resume"] = step
            turn.state["step"] = "forget"
            self._prompt(turn)
        elif name == "cancel":
            self._cancel(turn)
        else:
            shown = re.sub(r"[^\w]", "", name)[:32] or "?"
            self._say(turn, self._t(turn, "unknown_command", command=shown))

    def _start(self, turn: _Turn, args: str) -> None:
        arg = args.split()[0].lower() if args.split() else ""
        if arg == "contact":
            self._open_form(turn, prefill=None)
            return
        if arg and arg in self.kb.by_id:
            self._answer_topic(turn, arg)
            return
        if self._step(turn) in FORM_STEPS:
            self._say(turn, self._t(turn, "welcome_back"))
            self._prompt(turn)
            return
        self._say(
            turn,
            self._t(turn, "welcome", call_id=self.kb.call.id) + "\n\n" + self._t(turn, "menu_hint"),
            *self._topic_buttons(turn),
        )

    def _button(self, turn: _Turn, button_id: str) -> None:
        step = self._step(turn)
        kind, _, value = button_id.partition(":")
        if kind == "faq" and value in self.kb.by_id:
            self._answer_topic(turn, value)
        elif button_id == "topics":
            self._say(turn, self._t(turn, "faq_menu"), *self._topic_buttons(turn))
            self._resume(turn)
        elif button_id == "contact":
            self._open_form(turn, prefill=None)
        elif button_id == "fwd" and isinstance(turn.state.get("pending"), str):
            self._open_form(turn, prefill=turn.state.pop("pending"))
        elif kind == "lang" and value in LANGUAGES:
            self._set_language(turn, value)
        elif button_id == "cancel":
            self._cancel(turn)
        elif kind == "c" and step == "country":
            self._country_button(turn, value)
        elif kind == "consent" and step == "consent" and value in ("yes", "no"):
            self._consent(turn, value == "yes")
        elif button_id == "send" and step == "confirm":
            self._submit(turn)
        elif button_id == "edit" and step == "confirm":
            turn.state["step"] = "edit"
            self._prompt(turn)
        elif kind == "edit" and step == "edit" and value in FIELDS:
            turn.state["step"] = value
            turn.state["back"] = "confirm"
            self._prompt(turn)
        elif button_id == "back" and step == "edit":
            turn.state["step"] = "confirm"
            self._prompt(turn)
        elif kind == "forget" and step == "forget" and value in ("yes", "no"):
            self._forget(turn, value == "yes")
        else:
            self._say(turn, self._t(turn, "stale_button"))
            if step is not None:
                self._prompt(turn)

    def _text(self, turn: _Turn, text: str) -> None:
        step = self._step(turn)
        folded = _fold(text[:200])
        if folded in CANCEL_WORDS:
            # Typed "annulla" / "cancel" / "stop": like /cancel, in a form or not.
            self._cancel(turn)
        elif step in FIELDS:
            assert step is not None
            self._field_value(turn, step, text)
        elif step == "consent":
            if folded in YES or folded == _fold(self._t(turn, "btn_accept")):
                self._consent(turn, True)
            elif folded in NO or folded == _fold(self._t(turn, "btn_decline")):
                self._consent(turn, False)
            else:
                # A short nudge with the buttons, not the whole notice again.
                self._say(
                    turn,
                    self._t(
                        turn,
                        "consent_choose",
                        accept=self._t(turn, "btn_accept"),
                        decline=self._t(turn, "btn_decline"),
                    ),
                    *self._consent_buttons(turn),
                )
        elif step == "confirm":
            if folded in SEND_WORDS or folded == _fold(self._t(turn, "btn_confirm")):
                self._submit(turn)
            elif folded in EDIT_WORDS or folded == _fold(self._t(turn, "btn_edit")):
                turn.state["step"] = "edit"
                self._prompt(turn)
            else:
                self._prompt(turn)
        elif step == "edit":
            chosen = self._field_by_label(turn, folded)
            if chosen is not None:
                turn.state["step"] = chosen
                turn.state["back"] = "confirm"
            elif folded in ("back", "indietro"):
                turn.state["step"] = "confirm"
            self._prompt(turn)
        elif step == "forget":
            # Only answers reach here (see _dispatch).
            if folded in YES or folded == _fold(self._t(turn, "btn_forget_yes")):
                self._forget(turn, True)
            else:
                self._forget(turn, False)
        else:
            self._free_text(turn, text)

    def _field_by_label(self, turn: _Turn, folded: str) -> str | None:
        for name in FIELDS:
            labels = {name, *(_fold(self.texts.get(lang, f"field_{name}")) for lang in LANGUAGES)}
            if folded in labels:
                return name
        return None

    # ----------------------------------------------------------------- free text and FAQ

    def _free_text(self, turn: _Turn, text: str) -> None:
        question = text.strip()
        folded = _fold(question[:200])
        if not folded:
            self._say(turn, self._t(turn, "empty"), Button("topics", self._t(turn, "btn_topics")))
            return
        chat = small_talk(question)
        if chat.kind is not None:
            # Courtesy is not a question: no FAQ look-up, nothing for the enquiry's history.
            topics = Button("topics", self._t(turn, "btn_topics"))
            if chat.kind == "greeting":
                self._say(turn, self._t(turn, "greeting"), topics)
            elif chat.kind == "how_are_you":
                self._say(turn, self._t(turn, "greeting_how"), topics)
            elif chat.kind == "thanks":
                self._say(turn, self._t(turn, "thanks"))
            else:
                self._say(turn, self._t(turn, "farewell"))
            return
        # "Ciao, qual è il budget?": the question wins, matched without its greeting.
        answer = self.kb.answer(chat.rest[:MATCH_CHARS], lang=turn.lang, now=turn.now)
        turn.faq_log.append((turn.lang, answer.faq_id, float(answer.score)))
        history = list(turn.state.get("faq", []))
        history.append(question[:HISTORY_CHARS])
        turn.state["faq"] = history[-HISTORY_SIZE:]
        if answer.faq_id is not None:
            turn.state.pop("pending", None)
            self._say(
                turn,
                answer.text,
                Button("topics", self._t(turn, "btn_topics")),
                Button("contact", self._t(turn, "btn_contact")),
                title=self.kb.by_id[answer.faq_id].topic.get(turn.lang),
            )
            return
        longest = LIMITS["question"][1]
        too_long: dict[str, Any] | None = None
        try:
            validate_field("question", question)
        except FieldError as exc:
            if exc.code == "too_long":
                too_long = dict(exc.params)
            elif len(question) > longest:
                too_long = {"length": len(question), "max": longest}
        if too_long is not None:
            # Too long to forward: say so now, rather than drop it silently in the form.
            turn.state.pop("pending", None)
            self._say(
                turn,
                self._t(turn, "fallback_too_long", **too_long),
                Button("topics", self._t(turn, "btn_topics")),
            )
            return
        turn.state["pending"] = question
        self._say(
            turn,
            self._t(turn, "fallback") + "\n" + self._t(turn, "fallback_retry"),
            Button("fwd", self._t(turn, "btn_forward")),
            Button("topics", self._t(turn, "btn_topics")),
        )

    def _answer_topic(self, turn: _Turn, faq_id: str) -> None:
        text = self.kb.render(faq_id, turn.lang, turn.now)
        self._say(
            turn,
            text,
            Button("topics", self._t(turn, "btn_topics")),
            Button("contact", self._t(turn, "btn_contact")),
            title=self.kb.by_id[faq_id].topic.get(turn.lang),
        )
        self._resume(turn)

    # ----------------------------------------------------------------- simple commands

    def _status(self, turn: _Turn) -> None:
        rows = user_enquiries(self.db, turn.event.channel, turn.event.user_id)
        if not rows:
            self._say(turn, self._t(turn, "status_none"))
            return
        zone = ZoneInfo(self.settings.timezone)
        lines = [self._t(turn, "status_header")]
        for row in rows:
            created = from_iso(row["created_at"]).astimezone(zone)
            lines.append(
                self._t(
                    turn,
                    "status_line",
                    ref=row["ref"],
                    status=self._t(turn, f"status_{row['status']}"),
                    date=format_day(created, turn.lang),
                )
            )
        self._say(turn, "\n".join(lines))

    def _privacy_text(self, turn: _Turn) -> str:
        return self._t(
            turn,
            "privacy",
            secretariat=self.settings.secretariat.email,
            retention=self.texts.duration(turn.lang, self.settings.privacy.retention),
        )

    def _privacy(self, turn: _Turn) -> None:
        self._say(turn, self._privacy_text(turn), title=self._t(turn, "privacy_title"))

    def _language_command(self, turn: _Turn, args: str) -> None:
        wanted = _normalize_lang(args.split()[0]) if args.split() else None
        if wanted is None and args:
            wanted = {"italiano": "it", "italian": "it", "english": "en", "inglese": "en"}.get(
                _fold(args)
            )
        if wanted is not None:
            self._set_language(turn, wanted)
            return
        self._say(
            turn,
            self._t(turn, "language_choose"),
            Button("lang:it", self._t(turn, "btn_lang_it")),
            Button("lang:en", self._t(turn, "btn_lang_en")),
        )

    def _set_language(self, turn: _Turn, lang: str) -> None:
        turn.state["chosen"] = lang
        turn.lang = lang
        self._say(turn, self._t(turn, "language_set"))
        self._resume(turn)

    def _cancel(self, turn: _Turn) -> None:
        step = self._step(turn)
        turn.state.pop("pending", None)
        if step == "forget":
            self._forget(turn, False)
            return
        if step is None:
            self._say(turn, self._t(turn, "cancel_nothing"))
            return
        self._clear_form(turn)
        self._say(turn, self._t(turn, "cancel_done"))

    def _forget(self, turn: _Turn, confirmed: bool) -> None:
        if not confirmed:
            self._leave_forget(turn)
            self._say(turn, self._t(turn, "forget_kept"))
            self._resume(turn)
            return
        turn.state.pop("step", None)
        count = forget_user(self.db, turn.event.channel, turn.event.user_id, now=turn.now)
        # The session row is gone; saving it again would keep the FAQ questions.
        turn.erased = True
        log.info("user data erased: channel=%s enquiries=%d", turn.event.channel, count)
        self._say(turn, self._t(turn, "forget_done", count=count))

    # ----------------------------------------------------------------- the form

    def _limit_reached(self, turn: _Turn) -> bool:
        event = turn.event
        done = count_created_since(self.db, event.channel, event.user_id, turn.now - ENQUIRY_WINDOW)
        return done >= self.settings.enquiries.max_per_day

    def _open_form(self, turn: _Turn, prefill: str | None) -> None:
        if self._step(turn) in FORM_STEPS:
            if prefill is not None:
                self._prefill(turn, prefill)
            self._say(turn, self._t(turn, "form_continue"))
            self._prompt(turn)
            return
        if self._limit_reached(turn):
            self._clear_form(turn)
            limit = self.settings.enquiries.max_per_day
            self._say(turn, self._t(turn, "daily_limit", limit=limit))
            return
        self._clear_form(turn)
        intro = self._t(turn, "form_intro")
        if prefill is not None and self._prefill(turn, prefill):
            intro += "\n" + self._t(turn, "question_kept")
        self._say(turn, intro)
        self._next_step(turn)

    def _prefill(self, turn: _Turn, text: str) -> bool:
        try:
            self._draft(turn)["question"] = validate_field("question", text)
        except FieldError:
            return False
        return True

    def _next_step(self, turn: _Turn) -> None:
        """Move to the first missing field, then consent, then the summary; ask for it."""
        draft = self._draft(turn)
        missing = [name for name in FIELDS if not draft.get(name)]
        if missing:
            turn.state["step"] = missing[0]
        elif not turn.state.get("consent"):
            turn.state["step"] = "consent"
        else:
            turn.state["step"] = "confirm"
        turn.state.pop("back", None)
        self._prompt(turn)

    def _field_value(self, turn: _Turn, step: str, text: str) -> None:
        try:
            value = validate_field(step, text)
        except FieldError as exc:
            error = self._t(turn, f"err_{exc.code}", **exc.params)
            self._say(turn, error)
            self._prompt(turn)
            return
        self._draft(turn)[step] = value
        if turn.state.get("back") == "confirm" and turn.state.get("consent"):
            turn.state.pop("back", None)
            turn.state["step"] = "confirm"
            self._prompt(turn)
            return
        self._next_step(turn)

    def _country_button(self, turn: _Turn, code: str) -> None:
        if code == "more":
            self._say(turn, self._t(turn, "ask_country_all"), *self._country_buttons(turn, True))
            return
        country = countries.by_code(code)
        if country is None:
            self._say(turn, self._t(turn, "stale_button"))
            self._prompt(turn)
            return
        self._field_value(turn, "country", country.stored)

    def _country_buttons(self, turn: _Turn, everything: bool) -> list[Button]:
        if everything:
            chosen = list(countries.listed())
        else:
            chosen = [c for code in countries.COMMON if (c := countries.by_code(code))]
        buttons = [Button(f"c:{c.code}", c.label(turn.lang)) for c in chosen]
        if not everything:
            buttons.append(Button("c:more", self._t(turn, "btn_country_more")))
        buttons.append(Button(f"c:{countries.OTHER_CODE}", self._t(turn, "btn_country_other")))
        return buttons

    def _consent(self, turn: _Turn, accepted: bool) -> None:
        if not accepted:
            # Declining stores nothing: the draft leaves the session too.
            self._clear_form(turn)
            turn.state.pop("pending", None)
            self._say(turn, self._t(turn, "declined"))
            return
        turn.state["consent"] = True
        self._next_step(turn)

    def _summary(self, turn: _Turn) -> str:
        draft = self._draft(turn)
        country = draft.get("country", "")
        found = countries.find_country(country) if country else None
        shown = found.label(turn.lang) if found else country
        return self._t(
            turn,
            "summary",
            name=draft.get("name", ""),
            email=draft.get("email", ""),
            organisation=draft.get("organisation", ""),
            country=shown,
            question=draft.get("question", ""),
        )

    def _prompt(self, turn: _Turn) -> None:
        """Ask for the current step again (or for the first time)."""
        step = self._step(turn)
        if step is None:
            self._say(turn, self._t(turn, "menu_hint"), *self._topic_buttons(turn))
        elif step == "country":
            self._say(turn, self._t(turn, "ask_country"), *self._country_buttons(turn, False))
        elif step in FIELDS:
            self._say(turn, self._t(turn, f"ask_{step}"))
        elif step == "consent":
            self._say(
                turn,
                self._privacy_text(turn) + "\n\n" + self._t(turn, "consent_ask"),
                *self._consent_buttons(turn),
                title=self._t(turn, "privacy_title"),
            )
        elif step == "confirm":
            if any(not self._draft(turn).get(name) for name in FIELDS):
                # A damaged session: ask for what is missing instead of sending half a form.
                self._next_step(turn)
                return
            self._say(
                turn,
                self._summary(turn),
                Button("send", self._t(turn, "btn_confirm")),
                Button("edit", self._t(turn, "btn_edit")),
                Button("cancel", self._t(turn, "btn_cancel")),
                title=self._t(turn, "summary_title"),
            )
        elif step == "edit":
            self._say(
                turn,
                self._t(turn, "edit_choose"),
                *(Button(f"edit:{name}", self._t(turn, f"field_{name}")) for name in FIELDS),
                Button("back", self._t(turn, "btn_back")),
            )
        elif step == "forget":
            self._say(
                turn,
                self._t(turn, "forget_confirm"),
                Button("forget:yes", self._t(turn, "btn_forget_yes")),
                Button("forget:no", self._t(turn, "btn_forget_no")),
            )

    def _consent_buttons(self, turn: _Turn) -> tuple[Button, Button]:
        return (
            Button("consent:yes", self._t(turn, "btn_accept")),
            Button("consent:no", self._t(turn, "btn_decline")),
        )

    def _resume(self, turn: _Turn) -> None:
        """After a side trip (help, a topic), remind the user of the form waiting for them."""
        if self._step(turn) in FORM_STEPS:
            self._say(turn, self._t(turn, "form_continue"))
            self._prompt(turn)

    def _history(self, turn: _Turn) -> list[str]:
        """The questions asked before, without the one being forwarded (it is the question)."""
        question = self._draft(turn).get("question", "")[:HISTORY_CHARS].strip()
        return [item for item in turn.state.get("faq", []) if item.strip() != question]

    def _submit(self, turn: _Turn) -> None:
        event = turn.event
        try:
            row = submit_enquiry(
                self.db,
                self.settings,
                self._draft(turn),
                channel=event.channel,
                user_id=event.user_id,
                chat_id=event.chat_id or event.user_id,
                username=event.username,
                lang=turn.lang,
                faq_history=self._history(turn),
                now=turn.now,
            )
        except EnquiryLimitError:
            self._clear_form(turn)
            limit = self.settings.enquiries.max_per_day
            self._say(turn, self._t(turn, "daily_limit", limit=limit))
            return
        except EnquiryError:
            # Only a damaged draft gets here: drop what is invalid and ask for it again.
            draft = self._draft(turn)
            for name in FIELDS:
                try:
                    validate_field(name, draft.get(name, ""))
                except FieldError:
                    draft.pop(name, None)
            self._next_step(turn)
            return
        self._clear_form(turn)
        turn.state.pop("faq", None)
        turn.state.pop("pending", None)
        turn.committed = True
        log.info("enquiry submitted: ref=%s channel=%s", row["ref"], event.channel)
        self._say(
            turn,
            self._t(turn, "submitted", ref=row["ref"], email=row["email"], channel=event.channel),
        )
