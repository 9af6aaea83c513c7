"""The secretariat's side of the Telegram channel: admin chat, admin commands and buttons.

Who may act is checked here (`admin_user_ids`); what an action does is AdminCommands'
(bot/channels/telegram_admin.py). Storing and sending is left to `Handling.commit`, which
also refreshes an enquiry's post in the admin chat when an action changed it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from telegram import Bot, Message, Update
from telegram.ext import ContextTypes, filters

from bot.channels.telegram_admin import ADMIN_COMMANDS, AdminCommands, is_admin, plain
from bot.channels.telegram_applicant import split_command
from bot.channels.telegram_handling import Handling
from bot.channels.telegram_journal import OutMessage
from bot.channels.telegram_render import parse_admin_data
from bot.enquiries import get_enquiry
from bot.settings import Settings


class AdminCommand(filters.MessageFilter):
    """Messages that are one of the admin commands (/open, /reply, /close, /stats)."""

    def filter(self, message: Message) -> bool:
        """Text (or caption) starting with an admin command."""
        text = message.text if message.text is not None else (message.caption or "")
        return len(text) > 1 and text.startswith("/") and split_command(text)[0] in ADMIN_COMMANDS


def is_admin_button(data: object) -> bool:
    """callback_data of an admin button (close, mark answered) on an enquiry post."""
    return isinstance(data, str) and parse_admin_data(data) is not None


class AdminHandlers:
    """The admin chat, admin commands anywhere, and the buttons on enquiry posts."""

    def __init__(
        self,
        handling: Handling,
        admin: AdminCommands,
        settings: Settings,
        bot: Bot,
        clock: Callable[[], datetime],
    ) -> None:
        self.handling = handling
        self.admin = admin
        self.settings = settings
        self.bot = bot
        self.clock = clock

    async def on_admin_chat(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The secretariat's chat: replies to enquiry posts and admin commands."""
        commit = self.handling.commit
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None:
            await commit(update, 0, list)
            return
        chat_id = message.chat_id
        text = message.text or message.caption or ""
        if text.startswith("/") and len(text) > 1:
            name, args = split_command(text)
            if name in ADMIN_COMMANDS:
                await self._command(update, name, args, chat_id)
            else:
                await commit(update, chat_id, list)
            return
        replied = message.reply_to_message
        if replied is None or replied.from_user is None or replied.from_user.id != self.bot.id:
            # Staff talking among themselves.
            await commit(update, chat_id, list)
            return
        message_id = message.message_id
        if not is_admin(self.settings, user.id):
            # Not a command: say why the reply went nowhere (it is not relayed).
            refusal = self.admin.t("reply_not_allowed")
            await commit(update, chat_id, lambda: plain(chat_id, refusal, message_id))
            return
        replied_id = replied.message_id
        actor = f"admin:{user.id}"

        def work() -> list[OutMessage]:
            row = self.admin.enquiry_for_post(replied_id)
            if row is None:
                return plain(chat_id, self.admin.t("not_a_post"), message_id)
            if not text.strip():
                return plain(chat_id, self.admin.t("reply_usage"), message_id)
            out = self.admin.answer(
                row["ref"], text, actor=actor, chat_id=chat_id, now=self.clock()
            )
            return [OutMessage(m.chat_id, m.html, m.buttons, message_id) for m in out]

        def watch() -> int | None:
            row = self.admin.enquiry_for_post(replied_id)
            return int(row["id"]) if row else None

        await commit(update, chat_id, work, watch=watch)

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An admin command outside the admin chat (an admin's private chat)."""
        message = update.effective_message
        if message is None:
            return
        text = message.text if message.text is not None else (message.caption or "")
        name, args = split_command(text)
        await self._command(update, name, args, message.chat_id)

    async def _command(self, update: Update, name: str, args: str, chat_id: int) -> None:
        user = update.effective_user
        if user is None or not is_admin(self.settings, user.id):
            # Neutral: the same words whatever exists, so nothing is revealed.
            refusal = self.handling.texts.get(self.handling.lang(update), "not_allowed")
            await self.handling.commit(update, chat_id, lambda: plain(chat_id, refusal))
            return
        user_id = user.id
        ref = args.split()[0] if args.split() else ""
        await self.handling.commit(
            update,
            chat_id,
            lambda: self.admin.command(
                name, args, user_id=user_id, chat_id=chat_id, now=self.clock()
            ),
            watch=(lambda: self._enquiry_id(ref)) if name in ("reply", "close") else None,
        )

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Close or mark answered from an enquiry's post; always answered."""
        query = update.callback_query
        if query is None:
            return
        action = parse_admin_data(query.data or "")
        message = query.message
        chat = message.chat if message is not None else None
        if action is None or chat is None or not is_admin(self.settings, query.from_user.id):
            notice = self.admin.t("not_allowed")
            await self.handling.commit(update, query.from_user.id, list, answer=notice)
            return
        verb, ref = action
        actor = f"admin:{query.from_user.id}"
        chat_id = chat.id

        def work() -> list[OutMessage]:
            if verb == "close":
                return self.admin.close(ref, None, actor=actor, chat_id=chat_id, now=self.clock())
            if verb == "answered":
                return self.admin.mark_answered(ref, actor=actor, chat_id=chat_id, now=self.clock())
            return []

        await self.handling.commit(
            update, chat_id, work, watch=lambda: self._enquiry_id(ref), answer=""
        )

    def _enquiry_id(self, ref: str) -> int | None:
        row = get_enquiry(self.admin.db, ref) if ref else None
        return int(row["id"]) if row else None
