"""Helpers for the dialogue tests: settings on a temp folder, a controllable clock, a driver."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from bot.dialogue.engine import Button, Engine, Event, Reply
from bot.knowledge import Found, KnowledgeBase, Understanding
from bot.resources import config_dir
from bot.settings import Settings
from bot.settings.load import settings_from_mapping
from bot.storage import open_database

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)

# Words that make the test knowledge base answer, whatever the real matcher does today.
KEYWORDS = {"budget": "budget", "deadline": "deadline", "scadenza": "deadline"}


class KeywordKB(KnowledgeBase):
    """The shipped knowledge base with a predictable reader: each sentence naming a keyword
    is answered (score 0.9), any other sentence is left for the secretariat."""

    def understand(
        self,
        text: str,
        lang: str | None = None,
        previous_lang: str | None = None,
        now: datetime | None = None,
    ) -> Understanding:
        reply_lang = self.choose_language(text, lang, previous_lang)
        answers: list[Found] = []
        unanswered: list[str] = []
        for sentence in re.findall(r"[^?!.\n]+[?!.]?", text) or [text]:
            if not sentence.strip():
                continue
            lowered = sentence.lower()
            faq_id = next((f for word, f in KEYWORDS.items() if word in lowered), None)
            if faq_id is None:
                unanswered.append(sentence.strip())
            elif all(found.faq_id != faq_id for found in answers):
                text_ = self.render(faq_id, reply_lang, now)
                answers.append(Found(faq_id, faq_id, 0.9, sentence.strip(), text_))
        return Understanding(
            reply_lang, tuple(answers), (), " ".join(unanswered) or None, 0.9 if answers else 0.1
        )


def load_kb() -> KeywordKB:
    """The shipped call and FAQ, with the keyword reader."""
    base = KnowledgeBase.load(config_dir())
    return KeywordKB(
        base.call, base.faq, None, base.fallback, lexicon=base.lexicon, cues=base._cues
    )


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings whose data lives under `data_dir`."""
    return settings_from_mapping({"data_dir": str(data_dir), **overrides}, "test")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        """Move forward by a timedelta's keyword arguments."""
        self.now += timedelta(**kwargs)


@dataclass
class Chat:
    """One user talking to an engine; keeps the last replies for assertions."""

    engine: Engine
    channel: str = "console"
    user_id: str = "u1"
    lang_hint: str | None = None
    clock: Clock | None = None
    step_seconds: float = 5.0
    last: list[Reply] = field(default_factory=list)

    def _send(self, event: Event) -> list[Reply]:
        if self.clock is not None:
            self.clock.advance(seconds=self.step_seconds)
        self.last = self.engine.handle(event)
        assert self.last, "the engine must always reply"
        return self.last

    def say(self, text: str) -> list[Reply]:
        """Send free text."""
        return self._send(self._event("text", text=text))

    def cmd(self, command: str, args: str = "") -> list[Reply]:
        """Send a command (without the slash)."""
        return self._send(self._event("command", command=command, args=args))

    def press(self, button_id: str) -> list[Reply]:
        """Press a button by id."""
        return self._send(self._event("button", button_id=button_id))

    def _event(self, kind: Any, **values: str) -> Event:
        return Event(
            channel=self.channel,
            user_id=self.user_id,
            kind=kind,
            lang_hint=self.lang_hint,
            chat_id=self.user_id,
            username=None,
            **values,
        )

    @property
    def text(self) -> str:
        """All the last replies' texts joined."""
        return "\n".join(reply.text for reply in self.last)

    @property
    def buttons(self) -> list[Button]:
        """All the last replies' buttons."""
        return [button for reply in self.last for button in reply.buttons]

    def button_ids(self) -> list[str]:
        """The ids of the last buttons."""
        return [button.id for button in self.buttons]


def fill_form(
    chat: Chat, question: str | None = "How many partners must a consortium have?"
) -> None:
    """Drive the form from /contact to the summary (consent accepted)."""
    chat.cmd("contact")
    chat.say("Maria Rossi")
    chat.say("maria.rossi@example.org")
    chat.say("Cluster Lombardia")
    chat.press("c:IT")
    if question is not None:
        chat.say(question)
    chat.press("consent:yes")


def rows(db: sqlite_utils.Database, table: str) -> list[dict[str, Any]]:
    """Every row of a table."""
    return list(db[table].rows)


def open_db(path: Path) -> sqlite_utils.Database:
    """A migrated database at `path`."""
    return open_database(path)


def iter_texts(db: sqlite_utils.Database) -> Iterator[str]:
    """Every text value stored in any table (for 'no personal data left' checks)."""
    for table in db.table_names():
        for row in db[table].rows:
            for value in row.values():
                if isinstance(value, str):
                    yield value
                elif isinstance(value, bytes):
                    yield value.decode("utf-8", "replace")
