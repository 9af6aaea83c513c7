"""Applicants' side of the Telegram channel: private messages and buttons to the engine.

Thin adapters: each handler maps a PTB update to an engine Event, renders the engine's
replies as HTML messages, and leaves storing and sending to `Handling.commit`. Messages in
other groups and channels get a polite decline.
"""

from __future__ import annotations

from collections.abc import Sequence

from telegram import Bot, Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from bot.channels.telegram_admin import plain
from bot.channels.telegram_handling import Handling
from bot.channels.telegram_journal import OutMessage
from bot.channels.telegram_render import ChannelTexts, keyboard, to_html_chunks
from bot.dialogue.engine import Engine, Event, Reply


def render_replies(replies: Sequence[Reply], chat_id: int) -> list[OutMessage]:
    """Engine replies -> HTML messages (split), the buttons on each reply's last piece."""
    out: list[OutMessage] = []
    for reply in replies:
        chunks = to_html_chunks(reply.text, reply.title)
        rows = keyboard(reply.buttons) if reply.buttons else ()
        for i, chunk in enumerate(chunks):
            out.append(OutMessage(chat_id, chunk, rows if i == len(chunks) - 1 else ()))
    return out


def split_command(text: str) -> tuple[str, str]:
    """'/reply@bot ECCP-1 text' -> ('reply', 'ECCP-1 text'); keeps newlines in the args."""
    head, _, rest = text.strip().partition(" ")
    first_line, newline, after = head.partition("\n")
    if newline:
        rest = after + (" " + rest if rest else "")
    name = first_line.lstrip("/").split("@", 1)[0].lower()
    return name, rest.strip()


class ApplicantHandlers:
    """Private chats with applicants, their buttons, and messages in other groups."""

    def __init__(self, handling: Handling, engine: Engine, bot: Bot, texts: ChannelTexts):
        self.handling = handling
        self.engine = engine
        self.bot = bot
        self.texts = texts

    def _engine_messages(self, event: Event, chat_id: int) -> list[OutMessage]:
        return render_replies(self.engine.handle(event), chat_id)

    async def on_private(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A message in a private chat: a command or a text for the dialogue engine."""
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None:
            return
        chat_id = message.chat_id
        text = message.text if message.text is not None else (message.caption or "")
        # Sent at the message's own date: the engine's flood limit counts by it.
        sent_at = message.date
        if text.startswith("/") and len(text) > 1:
            name, args = split_command(text)
            event = self.handling.event(
                update, kind="command", command=name, args=args, sent_at=sent_at
            )
        else:
            event = self.handling.event(update, kind="text", text=text, sent_at=sent_at)
        await self.handling.commit(update, chat_id, lambda: self._engine_messages(event, chat_id))

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An inline button of the dialogue; always answered."""
        query = update.callback_query
        if query is None:
            return
        message = query.message
        chat = message.chat if message is not None else None
        if chat is None or chat.type != ChatType.PRIVATE:
            notice = self.texts.get(
                self.handling.lang(update),
                "old_button" if chat is None else "group_decline",
                bot=self.bot.username or "",
            )
            await self.handling.commit(update, query.from_user.id, list, answer=notice)
            return
        event = self.handling.event(update, kind="button", button_id=query.data or "")
        chat_id = chat.id
        await self.handling.commit(
            update, chat_id, lambda: self._engine_messages(event, chat_id), answer=""
        )

    async def on_group(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A message in a group or channel other than the admin chat: polite decline."""
        message = update.effective_message
        bot_id = self.bot.id
        addressed = message is not None and (
            bool(message.text or message.caption)
            or any(member.id == bot_id for member in message.new_chat_members)
            or bool(message.group_chat_created or message.supergroup_chat_created)
        )
        if message is None or message.chat.type == ChatType.CHANNEL or not addressed:
            # Channel posts and service messages (someone left, the bot was removed...).
            await self.handling.commit(update, 0, list)
            return
        decline = self.texts.get(
            self.handling.lang(update), "group_decline", bot=self.bot.username or ""
        )
        chat_id = message.chat_id
        await self.handling.commit(update, chat_id, lambda: plain(chat_id, decline))
