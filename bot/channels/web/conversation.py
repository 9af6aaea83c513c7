"""One chat post through the dialogue engine, kept in the page's transcript."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bot.channels.web import transcript
from bot.channels.web.render import (
    bot_message,
    field_prompts,
    form_field,
    known_links,
    plain,
    refused,
    session_id,
    user_message,
)
from bot.dialogue.engine import Engine, Event
from bot.dialogue.session import stored_language
from bot.dialogue.texts import LANGUAGES
from bot.enquiries.fields import FIELDS, LIMITS
from bot.storage import transaction

if TYPE_CHECKING:
    from bot.app import App
    from bot.settings import Settings


class Conversation:
    """The engine's turns for web sessions, stored as the page shows them."""

    def __init__(self, settings: Settings, app: App) -> None:
        assert app.db is not None, "start the App first"
        self.app = app
        self.db = app.db
        self.engine = Engine(app.db, app.kb, settings, clock=app.clock, on_commit=app.kick)
        self.links = known_links(app.kb, settings.secretariat.email)
        self.prompts = field_prompts(self.engine.texts, FIELDS, LANGUAGES)

    def converse(self, token: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """One post: the engine's replies, stored in the transcript, as the page's JSON.

        One transaction holds the engine's turn and the transcript rows: the page's copy
        never disagrees with the conversation, and a message costs one commit.
        """
        with transaction(self.db):
            return self._converse(token, payload)

    def _converse(self, token: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        session = session_id(token)
        lang = payload.get("lang") if payload.get("lang") in LANGUAGES else None
        now = self.app.clock()
        last = transcript.last_bot_message(self.db, session)
        field = form_field(plain(last), self.prompts) if last else None
        shown: list[dict[str, Any]] = []
        if "button" in payload:
            event = _event(session, "button", lang, button_id=str(payload["button"]))
            label = _button_label(last, event.button_id)
            if label is not None:
                shown.append(user_message(label))
        elif "command" in payload:
            event = _event(session, "command", lang, command=str(payload["command"]))
        else:
            text = str(payload.get("text", ""))
            event = _event(session, "text", lang, text=text)
            shown.append(user_message(text))
        mark = transcript.audit_mark(self.db)
        replies = self.engine.handle(event)
        answers = [bot_message(reply, self.links) for reply in replies]
        if transcript.erased_since(self.db, mark):
            # /forget erased the user's data: the page's copy goes too, and the
            # browser drops its token, so nothing links the next visit to this one.
            transcript.forget(self.db, session)
            forgotten: dict[str, Any] = {"messages": _unstored(answers), "forgotten": True}
            if lang is not None:
                forgotten["lang"] = lang
            return forgotten
        stored = transcript.append(self.db, session, "user", shown, now)
        stored += transcript.append(self.db, session, "bot", answers, now)
        result: dict[str, Any] = {"messages": stored}
        # The conversation's language (chosen with /language, or detected): the page's own
        # labels follow it.
        replied_in = stored_language(self.db, transcript.CHANNEL, session)
        if replied_in is not None:
            result["lang"] = replied_in
        error = refused(field, answers, self.prompts) if event.kind == "text" else None
        now_field = form_field(plain(answers[-1]), self.prompts) if answers else None
        if now_field is not None:
            result["field"] = now_field
            result["maxlength"] = LIMITS[now_field][1]
        if error is not None:
            result["error"] = error
        return result

    def relay_title(self, lang: str, ref: str) -> str:
        """The heading of a relayed answer, as the other channels word it."""
        return self.engine.texts.get(lang, "answer_relay", ref=ref)


def _event(
    session: str,
    kind: str,
    lang: str | None,
    *,
    text: str = "",
    command: str = "",
    button_id: str = "",
) -> Event:
    return Event(
        channel=transcript.CHANNEL,
        user_id=session,
        kind=kind,  # type: ignore[arg-type]
        text=text,
        command=command,
        button_id=button_id,
        lang_hint=lang,
        chat_id=session,
    )


def _button_label(last: Mapping[str, Any] | None, button_id: str) -> str | None:
    for button in (last or {}).get("buttons", ()):
        if isinstance(button, dict) and button.get("id") == button_id:
            return str(button.get("label", ""))
    return None


def _unstored(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": 0, "from": "bot", **message} for message in messages]
