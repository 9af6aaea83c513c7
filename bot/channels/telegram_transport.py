"""The Telegram transport of the deliveries queue (telegram_deliveries.py: what the channel
asks of the queue).

Every message to a Telegram chat is a `deliveries` row of transport `telegram`: replies to
an update (stored, already claimed by this process, in the transaction that marks the
update handled, then sent at once), admin-chat posts, relayed answers, failure reports.
The queue's worker sends the others, and takes a reply over if its sender died.

`TelegramTransport.send` maps Telegram's answers to the queue's outcomes: accepted is
Sent (with the message id), 429 and network trouble are Retry (429 after `retry_after`),
a chat that blocked the bot is Dead, an admin group upgraded to a supergroup is followed
(ChatMigrated: the new id is persisted, the operator told, the delivery retried).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import sqlite_utils
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBUserWarning

from bot import enquiries
from bot.channels.telegram_admin import (
    answer_messages,
    follow_up_post_messages,
    mail_failed_messages,
    plain,
    post_messages,
)
from bot.channels.telegram_journal import KIND_REPLY, OutMessage
from bot.channels.telegram_render import ChannelTexts
from bot.deliveries.model import Dead, Delivery, Outcome, Retry, Sent
from bot.logs import network_cause
from bot.settings import Settings
from bot.storage import transaction

log = logging.getLogger(__name__)

NAME = "telegram"


def keyboard_json(rows: Sequence[Sequence[tuple[str, str]]]) -> str:
    """An inline keyboard (rows of (callback_data, label)) as the Bot API's JSON."""
    return json.dumps(
        {
            "inline_keyboard": [
                [{"text": label, "callback_data": data} for data, label in row] for row in rows
            ]
        },
        ensure_ascii=False,
    )


def _seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value or 0)


class TelegramTransport:
    """Sends `telegram` deliveries through python-telegram-bot (its rate limiter included)."""

    name = NAME
    # One chat's deliveries in order, different chats at once: a chat paused by a 429
    # delays nobody else.
    parallel = True
    timeout = 30.0

    def __init__(
        self,
        db: sqlite_utils.Database,
        settings: Settings,
        bot: Bot,
        texts: ChannelTexts,
        *,
        progress: Callable[[Delivery, int], Awaitable[None]],
    ) -> None:
        self.db = db
        self.settings = settings
        self.bot = bot
        self.texts = texts
        self.progress = progress
        # sendMessage goes through Bot.do_api_request (see send_message), which suggests
        # Bot.send_message each time: that one builds the objects we skip on purpose.
        warnings.filterwarnings(
            "ignore", message=r"Please use 'Bot\.sendMessage'", category=PTBUserWarning
        )
        # What each admin-chat post shows now, to skip edits that would change nothing.
        self.posts: dict[int, tuple[str, tuple[tuple[tuple[str, str], ...], ...]]] = {}

    def admin_chat(self) -> int:
        """The secretariat's chat (followed if it became a supergroup)."""
        return enquiries.admin_chat_id(self.db, self.settings)

    # -- rendering ------------------------------------------------------------------------

    def render(self, delivery: Delivery) -> list[OutMessage]:
        """The chat messages of a delivery, in the channel's words."""
        chat_id = int(delivery.recipient or 0) or self.admin_chat()
        payload = delivery.payload
        text = payload.decode() if isinstance(payload, bytes) else str(payload or "")
        if delivery.kind == KIND_REPLY:
            return [OutMessage.from_json(item) for item in json.loads(text or "[]")]
        enquiry = (
            enquiries.enquiry_by_id(self.db, delivery.enquiry_id)
            if delivery.enquiry_id is not None
            else None
        )
        lang = self.settings.secretariat.language
        if delivery.kind == "enquiry_posted" and enquiry is not None:
            post = post_messages(self.settings, self.texts, enquiry, chat_id)
            self.posts[int(enquiry["id"])] = (post.html, post.buttons)
            return [post]
        if delivery.kind == enquiries.FOLLOW_UP_POSTED and enquiry is not None:
            return [follow_up_post_messages(self.settings, self.texts, enquiry, text, chat_id)]
        if delivery.kind in ("answer", "answer_notice"):
            data = {"ref": (enquiry or {}).get("ref") or "", "lang": (enquiry or {}).get("lang")}
            data["text"] = text
            return answer_messages(self.texts, data, chat_id)
        if delivery.kind == "mail_failed":
            return mail_failed_messages(self.settings, self.texts, text, chat_id)
        if delivery.kind == "answer_undelivered" and enquiry is not None:
            facts = json.loads(text or "{}")
            report = self.texts.get(
                lang,
                "answer_undelivered",
                ref=enquiry.get("ref") or "",
                email=enquiry.get("email") or "-",
                reason=facts.get("reason") or "",
            )
            return plain(chat_id, report)
        if delivery.kind == "admin_chat_moved":
            facts = json.loads(text or "{}")
            return plain(chat_id, self.texts.get(lang, "admin_chat_moved", **facts))
        return plain(chat_id, text) if text else []

    # -- sending --------------------------------------------------------------------------

    async def send(self, delivery: Delivery) -> Outcome:
        """Send the delivery's messages not sent yet; Telegram's answer as an outcome."""
        if delivery.kind == enquiries.POST_ERASED:
            return await self._erase_post(delivery)
        try:
            messages = self.render(delivery)
        except (ValueError, KeyError, TypeError) as exc:
            return Dead(f"cannot render the message: {type(exc).__name__}")
        return await self.send_rendered(delivery, messages)

    async def send_rendered(self, delivery: Delivery, messages: Sequence[OutMessage]) -> Outcome:
        """Send a delivery's messages (rendered already) not sent yet, as an outcome."""
        if not messages:
            return Dead("nothing to send")
        done = int(delivery.sent_ref or 0) if delivery.status == "sending" else 0
        last: int | None = None
        to_admins = int(delivery.recipient or 0) in (0, self.admin_chat())
        try:
            for index in range(min(done, len(messages)), len(messages)):
                last = await self.send_message(messages[index])
                if index + 1 < len(messages):
                    # Recorded at once: a restart resends only what Telegram had not taken.
                    await self.progress(delivery, index + 1)
        except ChatMigrated as exc:
            return self._migrated(delivery, int(exc.new_chat_id))
        except Forbidden as exc:
            if to_admins:
                # The bot is not (yet) in the admin chat: a setting to fix, not a reason to
                # drop the secretariat's post. Kept, and tried again later.
                log.warning("cannot post in the admin chat (%s): add the bot to it", exc.message)
                return Retry(f"forbidden: {exc.message}")
            # The user blocked the bot or left: nothing will ever get through.
            return Dead(f"forbidden: {exc.message}", recipient_refused=True)
        except BadRequest as exc:
            if to_admins and "chat not found" in exc.message.lower():
                log.warning("cannot post in the admin chat (%s): add the bot to it", exc.message)
                return Retry(f"bad request: {exc.message}")
            return Dead(f"bad request: {exc.message}")
        except RetryAfter as exc:
            return Retry("429 flood control", after=timedelta(seconds=_seconds(exc.retry_after)))
        except NetworkError as exc:
            return Retry(f"{type(exc).__name__}: {network_cause(exc)}")
        except TelegramError as exc:
            return Retry(f"{type(exc).__name__}: {exc.message}")
        return Sent(ref=str(last) if last is not None else None)

    async def _erase_post(self, delivery: Delivery) -> Outcome:
        """Edit an erased enquiry's admin-chat post to its erased form."""
        enquiry = (
            enquiries.enquiry_by_id(self.db, delivery.enquiry_id)
            if delivery.enquiry_id is not None
            else None
        )
        admin_chat = self.admin_chat()
        # A payload names another post of the enquiry (a follow-up's); else its own post.
        target = str(
            delivery.payload.decode()
            if isinstance(delivery.payload, bytes)
            else delivery.payload or ""
        )
        own = not target.isdigit()
        message_id = enquiry.get("admin_message_id") if own and enquiry is not None else target
        if enquiry is None or not message_id or not admin_chat:
            return Dead("no admin-chat post to edit")
        if own:
            post = post_messages(self.settings, self.texts, enquiry, admin_chat)
        else:
            post = follow_up_post_messages(self.settings, self.texts, enquiry, "", admin_chat)
        try:
            await self.edit_post(post, admin_chat, int(message_id))
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():
                # Deleted by staff, or too old to edit: nothing left that shows the data.
                return Dead(f"bad request: {exc.message}")
        except RetryAfter as exc:
            return Retry("429 flood control", after=timedelta(seconds=_seconds(exc.retry_after)))
        except (NetworkError, Forbidden) as exc:
            return Retry(f"{type(exc).__name__}: {exc.message}")
        if own:
            self.posts[int(enquiry["id"])] = (post.html, post.buttons)
        return Sent(ref=str(message_id))

    async def edit_post(self, post: OutMessage, chat_id: int, message_id: int) -> None:
        """Show `post` (text and buttons) in place of the admin-chat message `message_id`."""
        markup = InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(label, callback_data=data) for data, label in line]
                for line in post.buttons
            ]
        )
        await self.bot.edit_message_text(
            post.html,
            chat_id=chat_id,
            message_id=message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=markup if post.buttons else None,
        )

    def _migrated(self, delivery: Delivery, new_chat: int) -> Outcome:
        old_chat = int(delivery.recipient or 0)
        with transaction(self.db):
            enquiries.follow_admin_chat(self.db, self.settings, old_chat, new_chat)
        log.warning(
            "the admin group %d became the supergroup %d: messages now go there; set "
            "telegram.admin_chat_id = %d in the settings",
            old_chat,
            new_chat,
            new_chat,
        )
        return Retry(f"chat migrated to {new_chat}", after=timedelta(0))

    async def send_message(self, message: OutMessage) -> int:
        """Send one message (HTML, inline keyboard, optional reply); its message_id.

        Through the raw Bot API call, with the keyboard as JSON: only the new message's id
        is needed, and PTB's objects for the keyboard and for the returned Message cost more
        than the rest of sending (bench/telegram.py). The rate limiter applies as usual."""
        params: dict[str, Any] = {
            "chat_id": message.chat_id,
            "text": message.html,
            "parse_mode": ParseMode.HTML.value,
        }
        if message.buttons:
            params["reply_markup"] = keyboard_json(message.buttons)
        if message.reply_to is not None:
            params["reply_parameters"] = json.dumps(
                {"message_id": message.reply_to, "allow_sending_without_reply": True}
            )
        sent = await self.bot.do_api_request("sendMessage", api_kwargs=params)
        return int(sent["message_id"])

    async def idle(self) -> None:
        """Nothing held between runs (PTB keeps its own connection pool)."""

    def status(self, error: str) -> str:
        """What of an error may go to the log."""
        return error.split(":")[0]
