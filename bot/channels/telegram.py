"""The Telegram channel: python-telegram-bot 22 handlers as thin adapters over the engine.

Flow of one update (long polling or webhook):

1. it is journaled in `updates` before its offset is confirmed to Telegram (the next
   getUpdates call) or before the webhook answers 200;
2. a per-chat queue runs it: one chat's updates in order, different chats concurrently;
3. the PTB handler maps it to an engine Event; in ONE transaction the engine's effects, the
   reply messages (a `notifications` row of kind `reply`) and `updates.handled_at` commit,
   so a replayed update is never handled twice and a crash never loses its replies;
4. the replies go out (HTML, escaped, split under 4 096 characters, inline keyboards)
   through FloodControl, which waits out 429s and retries 5xx and timeouts.

The secretariat side (admin chat posts, relayed answers, failed mails) is delivered by a
job on the app's scheduler from `notifications` rows, marked sent only once Telegram
accepted them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import importlib.util
import json
import logging
import os
import sys
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlite_utils
from telegram import (
    BotCommand,
    BotCommandScopeChat,
    Update,
)
from telegram.constants import ChatAction, ChatType
from telegram.error import (
    BadRequest,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.channels.telegram_admin import (
    ADMIN_COMMANDS,
    AdminCommands,
    is_admin,
    plain,
)
from bot.channels.telegram_journal import (
    CHANNEL,
    GroupCommit,
    Journal,
    OutMessage,
)
from bot.channels.telegram_limits import MAX_IN_FLIGHT, FloodControl, retry_after_seconds
from bot.channels.telegram_notifications import TelegramNotifications
from bot.channels.telegram_render import (
    BOTFATHER_HELP,
    ChannelTexts,
    keyboard,
    parse_admin_data,
    to_html_chunks,
)
from bot.dialogue.engine import COMMANDS as ENGINE_COMMANDS
from bot.dialogue.engine import Engine, Event, Reply
from bot.enquiries import get_enquiry
from bot.settings import Settings
from bot.storage import utc_now

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ("message", "callback_query")
# Long-poll length; the HTTP read timeout is a little longer.
POLL_TIMEOUT = 25
POLL_READ_MARGIN = 10
POLL_BACKOFF_MAX = 5.0
# Chats handled at the same time (updates of one chat always run one after another). A chat
# waiting for its flood limit holds a slot, so this is large; FloodControl bounds the
# requests actually on the wire (MAX_IN_FLIGHT).
MAX_CONCURRENT_CHATS = 256
# httpx's pool walks every connection on every request: no more than FloodControl lets fly.
CONNECTION_POOL = MAX_IN_FLIGHT
# Replies to an update that took longer than this to handle start with "typing", and so do
# answers of more than TYPING_FROM messages (long texts split, paced per chat).
SLOW_REPLY = timedelta(seconds=1)
TYPING_FROM = 2
PRUNE_EVERY = timedelta(hours=6)
PRUNE_JOB = "telegram-journal-prune"
# Seconds to let running handlers finish on SIGINT/SIGTERM; the journal (unhandled updates
# are replayed) and the reply rows (unsent messages are resent) cover what is cut off.
STOP_GRACE = 3.0
# The applicants' commands are the engine's: one list, so the menu never drifts from it.
USER_COMMANDS = ENGINE_COMMANDS
# The longest a cosmetic request (typing, a button's answer) may hold up the real reply.
COSMETIC_TIMEOUT = 1.5
# Telegram refuses answers to button presses older than about 15 seconds: a press still
# waiting in its chat's queue (behind a 429, say) this long after it arrived is answered
# at once, without a notice, so the button stops spinning.
EARLY_ANSWER_AFTER = 10.0
# Button presses answered in this process (to answer each once); forgotten past this size.
ANSWERED_KEEP = 4096
# Test hook (crash test): seconds to sleep before handling each update, so a test can
# SIGKILL the process after updates were fetched and journaled but before they were handled.
HANDLING_DELAY_ENV = "CLUSTERBOT_TEST_HANDLING_DELAY"


class TelegramSetupError(Exception):
    """A problem the operator must fix (no token, a token Telegram refuses)."""


class ChatQueues:
    """Run jobs one after another per key, different keys concurrently (bounded)."""

    def __init__(self, max_concurrent: int) -> None:
        self._queues: dict[object, deque[Callable[[], Awaitable[None]]]] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, key: object, job: Callable[[], Awaitable[None]]) -> None:
        """Queue a job behind the key's earlier jobs."""
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        self._idle.clear()
        task = asyncio.create_task(self._worker(key), name=f"chat-queue-{hash(key) & 0xFFFF}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, key: object, job: Callable[[], Awaitable[None]]) -> None:
        """Queue a job and wait until it ran."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def wrapped() -> None:
            try:
                await job()
            except BaseException as exc:
                if not done.done():
                    done.set_exception(exc)
                raise
            else:
                if not done.done():
                    done.set_result(None)

        self.submit(key, wrapped)
        await done

    async def _worker(self, key: object) -> None:
        queue = self._queues[key]
        try:
            async with self._slots:
                while queue:
                    job = queue.popleft()
                    try:
                        await job()
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("update handling failed")
        finally:
            del self._queues[key]
            if not self._queues:
                self._idle.set()

    async def drain(self, grace: float) -> bool:
        """Wait until every queue is empty; False when `grace` seconds passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            return False
        return True

    async def cancel(self) -> None:
        """Stop the workers (their updates stay unhandled in the journal)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def update_key(payload: dict[str, Any]) -> object:
    """The chat an update belongs to (its ordering key)."""
    for kind in ("message", "edited_message", "channel_post"):
        message = payload.get(kind)
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            return message["chat"].get("id")
    query = payload.get("callback_query")
    if isinstance(query, dict):
        message = query.get("message")
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            return message["chat"].get("id")
        if isinstance(query.get("from"), dict):
            return query["from"].get("id")
    return "other"


def callback_query_id(payload: dict[str, Any]) -> str | None:
    """The id of an update's callback query (a button press), if it is one."""
    query = payload.get("callback_query")
    if isinstance(query, dict) and isinstance(query.get("id"), str):
        return str(query["id"])
    return None


def split_command(text: str) -> tuple[str, str]:
    """'/reply@bot ECCP-1 text' -> ('reply', 'ECCP-1 text'); keeps newlines in the args."""
    head, _, rest = text.strip().partition(" ")
    first_line, newline, after = head.partition("\n")
    if newline:
        rest = after + (" " + rest if rest else "")
    name = first_line.lstrip("/").split("@", 1)[0].lower()
    return name, rest.strip()


def _skip_missing_sniffio() -> None:
    # httpcore tries `import sniffio` on every request; when it is not installed, each try
    # walks sys.path again (about a third of a request's CPU time). A None entry in
    # sys.modules makes the import fail at once, which httpcore handles ("asyncio").
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def build_application(
    settings: Settings, flood: FloodControl | None = None
) -> Application[Any, Any, Any, Any, Any, Any]:
    """A PTB Application with our rate limiter and no Updater (we poll ourselves)."""
    token = settings.telegram.token.strip()
    if not token:
        raise TelegramSetupError(BOTFATHER_HELP)
    _skip_missing_sniffio()
    base_url = settings.telegram.base_url
    file_url = base_url[: -len("/bot")] + "/file/bot" if base_url.endswith("/bot") else base_url
    return (
        ApplicationBuilder()
        .token(token)
        .base_url(base_url)
        .base_file_url(file_url)
        .updater(None)
        .rate_limiter(flood or FloodControl())
        .connection_pool_size(CONNECTION_POOL)
        .pool_timeout(30.0)
        .get_updates_read_timeout(POLL_TIMEOUT + POLL_READ_MARGIN)
        .build()
    )


class TelegramChannel:
    """The bot: handlers, journal, per-chat queues, polling or webhook, notification worker."""

    def __init__(
        self,
        settings: Settings,
        app: Any,
        *,
        clock: Callable[[], datetime] = utc_now,
        flood: FloodControl | None = None,
    ) -> None:
        self.settings = settings
        # bot.app.App (started): its database, knowledge base, scheduler and kick().
        self.app = app
        self.db: sqlite_utils.Database = app.db
        self.clock = clock
        self.texts = ChannelTexts.load()
        self.journal = Journal(self.db)
        self.group = GroupCommit(self.db)
        self.admin = AdminCommands(self.db, settings, self.texts)
        self._committed = False
        self.engine = Engine(self.db, app.kb, settings, clock=clock, on_commit=self._on_commit)
        self.application = build_application(settings, flood)
        self.queues = ChatQueues(MAX_CONCURRENT_CHATS)
        self._queued: set[int] = set()
        # Updates whose handled mark a handler committed (so _process need not add one).
        self._settled: set[int] = set()
        self._received: dict[int, float] = {}
        # When each queued update reached us (wall clock; replayed ones: when journaled).
        self._arrived: dict[int, float] = {}
        # Updates whose callback query this process answered (or tried to).
        self._answered: set[int] = set()
        # Updates whose handler raised (seen by on_error): handled with an apology.
        self._failed: set[int] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._delay = float(os.environ.get(HANDLING_DELAY_ENV) or 0)
        self.webhook_server: Any = None
        self.notifications = TelegramNotifications(
            settings,
            app,
            self.application.bot,
            texts=self.texts,
            journal=self.journal,
            group=self.group,
            queues=self.queues,
            clock=clock,
        )
        self._add_handlers()

    # -- handlers -------------------------------------------------------------------------

    def _add_handlers(self) -> None:
        application = self.application
        admin_chat = self.settings.telegram.admin_chat_id
        if admin_chat:
            application.add_handler(
                MessageHandler(filters.Chat(chat_id=admin_chat), self.on_admin_chat)
            )
        application.add_handler(MessageHandler(filters.ChatType.PRIVATE, self.on_private))
        application.add_handler(MessageHandler(filters.ALL, self.on_group))
        application.add_handler(CallbackQueryHandler(self.on_button))
        application.add_error_handler(self.on_error)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log a handler failure by type and code location only (no message contents)."""
        error = context.error
        if isinstance(update, Update):
            self._failed.add(update.update_id)
        if error is None:
            return
        log.error(
            "handler error %s:\n%s",
            type(error).__name__,
            "".join(traceback.format_tb(error.__traceback__)),
        )

    async def on_private(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A message in a private chat: admin commands, else the dialogue engine."""
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None:
            return
        chat_id = message.chat_id
        text = message.text if message.text is not None else (message.caption or "")
        is_command = bool(text.startswith("/") and len(text) > 1)
        if is_command:
            name, args = split_command(text)
            if name in ADMIN_COMMANDS:
                await self._admin_command(update, name, args, chat_id)
                return
            event = self._event(update, kind="command", command=name, args=args)
        else:
            event = self._event(update, kind="text", text=text)
        await self._commit(update, chat_id, lambda: self._engine_messages(event, chat_id))

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An inline button: admin buttons, else a dialogue event; always answered."""
        query = update.callback_query
        if query is None:
            return
        data = query.data or ""
        message = query.message
        chat = message.chat if message is not None else None
        admin_action = parse_admin_data(data)
        if admin_action is not None:
            if not is_admin(self.settings, query.from_user.id) or chat is None:
                notice = self.texts.get(self.settings.secretariat.language, "not_allowed")
                await self._commit(update, query.from_user.id, list, answer=notice)
            else:
                await self._admin_button(update, admin_action, chat.id)
            return
        if chat is None or chat.type != ChatType.PRIVATE:
            notice = self.texts.get(
                self._lang(update),
                "old_button" if chat is None else "group_decline",
                bot=self.application.bot.username or "",
            )
            await self._commit(update, query.from_user.id, list, answer=notice)
            return
        event = self._event(update, kind="button", button_id=data)
        chat_id = chat.id
        await self._commit(
            update, chat_id, lambda: self._engine_messages(event, chat_id), answer=""
        )

    async def on_group(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A message in a group or channel other than the admin chat: polite decline."""
        message = update.effective_message
        bot_id = self.application.bot.id
        addressed = message is not None and (
            bool(message.text or message.caption)
            or any(member.id == bot_id for member in message.new_chat_members)
            or bool(message.group_chat_created or message.supergroup_chat_created)
        )
        if message is None or message.chat.type == ChatType.CHANNEL or not addressed:
            # Channel posts and service messages (someone left, the bot was removed...).
            await self._commit(update, 0, list)
            return
        decline = self.texts.get(
            self._lang(update), "group_decline", bot=self.application.bot.username or ""
        )
        chat_id = message.chat_id
        await self._commit(update, chat_id, lambda: plain(chat_id, decline))

    async def on_admin_chat(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The secretariat's chat: replies to enquiry posts and admin commands."""
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None:
            await self._commit(update, 0, list)
            return
        chat_id = message.chat_id
        text = message.text or message.caption or ""
        if text.startswith("/") and len(text) > 1:
            name, args = split_command(text)
            if name in ADMIN_COMMANDS:
                await self._admin_command(update, name, args, chat_id)
            else:
                await self._commit(update, chat_id, list)
            return
        replied = message.reply_to_message
        bot_id = self.application.bot.id
        if replied is None or replied.from_user is None or replied.from_user.id != bot_id:
            # Staff talking among themselves.
            await self._commit(update, chat_id, list)
            return
        message_id = message.message_id
        if not is_admin(self.settings, user.id):
            refusal = self.texts.get(self.settings.secretariat.language, "not_allowed")
            await self._commit(update, chat_id, lambda: plain(chat_id, refusal, message_id))
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

        await self._commit(update, chat_id, work, watch=watch)

    async def _admin_command(self, update: Update, name: str, args: str, chat_id: int) -> None:
        user = update.effective_user
        if not is_admin(self.settings, user.id if user else None):
            # Neutral: the same words whatever exists, so nothing is revealed.
            lang = self._lang(update)
            refusal = self.texts.get(lang, "not_allowed")
            await self._commit(update, chat_id, lambda: plain(chat_id, refusal))
            return
        assert user is not None
        user_id = user.id
        ref = args.split()[0] if args.split() else ""
        await self._commit(
            update,
            chat_id,
            lambda: self.admin.command(
                name, args, user_id=user_id, chat_id=chat_id, now=self.clock()
            ),
            watch=(lambda: self._enquiry_id(ref)) if name in ("reply", "close") else None,
        )

    async def _admin_button(self, update: Update, action: tuple[str, str], chat_id: int) -> None:
        query = update.callback_query
        assert query is not None
        verb, ref = action
        actor = f"admin:{query.from_user.id}"

        def work() -> list[OutMessage]:
            if verb == "close":
                return self.admin.close(ref, None, actor=actor, chat_id=chat_id, now=self.clock())
            if verb == "answered":
                return self.admin.mark_answered(ref, actor=actor, chat_id=chat_id, now=self.clock())
            return []

        await self._commit(update, chat_id, work, watch=lambda: self._enquiry_id(ref), answer="")

    def _fingerprint(self, enquiry_id: int | None) -> tuple[Any, ...]:
        row = self._enquiry(enquiry_id)
        if row is None:
            return ()
        return (row["status"], row["answered_at"], row["closed_at"], row["erased_at"])

    def _enquiry_id(self, ref: str) -> int | None:
        row = get_enquiry(self.db, ref) if ref else None
        return int(row["id"]) if row else None

    async def _answer_query(self, update: Update, text: str | None) -> None:
        query = update.callback_query
        if query is None:
            return
        await self._answer(update.update_id, query.id, text)

    async def _answer(self, update_id: int, query_id: str, text: str | None) -> None:
        """answerCallbackQuery, once per update in this process; never holds things up."""
        if update_id in self._answered:
            return
        if len(self._answered) >= ANSWERED_KEEP:
            self._answered.clear()
        self._answered.add(update_id)
        try:
            async with asyncio.timeout(COSMETIC_TIMEOUT):
                await self.application.bot.answer_callback_query(
                    query_id, text=text[:200] if text else None
                )
        except BadRequest:
            # Too old (for example replayed after a restart) or answered already: nothing
            # left to answer.
            pass
        except (TelegramError, TimeoutError) as exc:
            log.warning("answerCallbackQuery failed: %s", type(exc).__name__)

    # -- mapping to the engine --------------------------------------------------------------

    def _event(self, update: Update, **fields: Any) -> Event:
        user = update.effective_user
        chat = update.effective_chat
        return Event(
            channel=CHANNEL,
            user_id=str(user.id) if user else "0",
            lang_hint=user.language_code if user else None,
            chat_id=str(chat.id) if chat else None,
            username=user.username if user else None,
            **fields,
        )

    def _lang(self, update: Update) -> str:
        user = update.effective_user
        code = (user.language_code or "") if user else ""
        code = code.lower()[:2]
        return code if code in ("it", "en") else self.settings.language

    def _engine_messages(self, event: Event, chat_id: int) -> list[OutMessage]:
        return render_replies(self.engine.handle(event), chat_id)

    def _on_commit(self) -> None:
        # Called by the engine inside our still-open transaction: act after our commit.
        self._committed = True

    async def _commit(
        self,
        update: Update,
        chat_id: int,
        work: Callable[[], Sequence[OutMessage]],
        *,
        watch: Callable[[], int | None] | None = None,
        answer: str | None = None,
    ) -> None:
        """Run `work` and store its messages and the handled mark atomically, then send.

        `answer` (a callback query's notice, "" for none) is sent right after the commit:
        once per button press even across a crash, and before the slower replies.

        `watch` names an enquiry the work may change (after it ran); if it did, its post in
        the admin chat is brought up to date.
        """
        update_id = update.update_id
        now = self.clock()

        before: list[tuple[Any, ...]] = []

        def body() -> tuple[int | None, list[OutMessage], bool] | None:
            if not self.journal.mark_handled(update_id, now) and self.journal.is_handled(update_id):
                return None
            self._committed = False
            try:
                # A savepoint: a failing handler leaves no half-done change behind, and the
                # update is still handled (once) with an apology instead of silence.
                with self.db.atomic():
                    if watch is not None:
                        before.append(self._fingerprint(watch()))
                    messages = list(work())
            except Exception as exc:
                log.error(
                    "handling update failed %s:\n%s",
                    type(exc).__name__,
                    "".join(traceback.format_tb(exc.__traceback__)),
                )
                self._committed = False
                before.clear()
                messages = self._apology(update, chat_id)
            committed = self._committed
            reply = self.journal.add_replies(chat_id, messages, now) if messages else None
            return reply, messages, committed

        # Stored durably (group commit) before anything is sent. The handler's own savepoints
        # (engine, enquiries) keep each domain change atomic.
        outcome = await self.group.run(body, savepoint=False)
        self._settled.add(update_id)
        if outcome is None:
            return
        if answer is not None:
            await self._answer_query(update, answer or None)
        reply_id, messages, committed = outcome
        if committed or watch is not None:
            self.notifications.kick()
        if reply_id is not None:
            received = self._received.get(update_id)
            slow = received is not None and time.monotonic() - received > SLOW_REPLY.total_seconds()
            if (slow or len(messages) > TYPING_FROM) and chat_id:
                await self._typing(chat_id)
            await self.notifications.deliver_reply(reply_id, messages)
        if watch is not None and before:
            enquiry_id = watch()
            # Only a real change: Telegram refuses an edit that changes nothing.
            if enquiry_id is not None and self._fingerprint(enquiry_id) != before[0]:
                await self.notifications.refresh_post(enquiry_id)

    def _apology(self, update: Update, chat_id: int) -> list[OutMessage]:
        """A short apology for a failed handler, in the user's language (none in groups)."""
        chat = update.effective_chat
        if not chat_id or chat is None or chat.type != ChatType.PRIVATE:
            return []
        return plain(chat_id, self.texts.get(self._lang(update), "handler_error"))

    async def _typing(self, chat_id: int) -> None:
        # Cosmetic: at most COSMETIC_TIMEOUT before the real reply, whatever Telegram does.
        try:
            async with asyncio.timeout(COSMETIC_TIMEOUT):
                await self.application.bot.send_chat_action(chat_id, ChatAction.TYPING)
        except (TelegramError, TimeoutError) as exc:
            log.info("typing action failed: %s", type(exc).__name__)

    def _enquiry(self, enquiry_id: Any) -> dict[str, Any] | None:
        if enquiry_id is None:
            return None
        cursor = self.db.execute("SELECT * FROM enquiries WHERE id = ?", [enquiry_id])
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cursor.description], row, strict=True))

    # -- receiving ------------------------------------------------------------------------

    def accept(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Journal fetched updates (committed before return), then queue the unhandled ones."""
        if not payloads:
            return
        now = self.clock()
        ids = [int(p["update_id"]) for p in payloads]
        rows = [
            (uid, json.dumps(p, ensure_ascii=False)) for uid, p in zip(ids, payloads, strict=True)
        ]
        self.group.add(lambda: self.journal.record(rows, now))
        # On disk now, before the caller confirms the offset or answers the webhook. If the
        # COMMIT fails, raise: the webhook answers 500 (Telegram sends it again) and polling
        # does not confirm the offset.
        if not self.group.flush():
            raise RuntimeError("could not journal the updates")
        marks = ",".join("?" * len(ids))
        unhandled = {
            row[0]
            for row in self.db.execute(
                "SELECT update_id FROM updates WHERE handled_at IS NULL "
                f"AND update_id IN ({marks})",
                ids,
            ).fetchall()
        }
        arrived = time.time()
        for uid, payload in zip(ids, payloads, strict=True):
            if uid in unhandled:
                self._queue(uid, payload, arrived)
                continue
            query_id = callback_query_id(payload)
            if query_id is not None and uid not in self._answered:
                # Handled before (a re-delivery): its answer may never have gone out.
                self._spawn(self._answer(uid, query_id, None))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _queue(self, update_id: int, payload: dict[str, Any], arrived: float) -> None:
        if update_id in self._queued:
            return
        self._queued.add(update_id)
        self._arrived[update_id] = arrived
        self.queues.submit(update_key(payload), lambda: self._process(update_id, payload))
        query_id = callback_query_id(payload)
        if query_id is not None:
            delay = max(0.0, arrived + EARLY_ANSWER_AFTER - time.time())
            asyncio.get_running_loop().call_later(
                delay, self._answer_if_waiting, update_id, query_id
            )

    def _answer_if_waiting(self, update_id: int, query_id: str) -> None:
        waiting = update_id in self._queued and update_id not in self._answered
        if waiting and not self._stop.is_set():
            self._spawn(self._answer(update_id, query_id, None))

    async def _process(self, update_id: int, payload: dict[str, Any]) -> None:
        query_id = callback_query_id(payload)
        try:
            if self._delay:
                await asyncio.sleep(self._delay)
            # "Slow" counts from here: time spent waiting in a busy queue is not the reply's.
            self._received[update_id] = time.monotonic()
            update: Update | None = None
            try:
                update = Update.de_json(payload, self.application.bot)
                await self.application.process_update(update)
            except Exception as exc:
                log.error("update could not be processed: %s", type(exc).__name__)
                self._failed.add(update_id)
            if update_id not in self._settled:
                # No handler, or a failing one: handled once all the same, never retried
                # forever (the error handler has logged it). A failure gets an apology.
                now = self.clock()
                failed = update_id in self._failed
                chat_id = update.effective_chat.id if update and update.effective_chat else 0
                apology = self._apology(update, chat_id) if failed and update else []

                def mark() -> int | None:
                    if not self.journal.mark_handled(update_id, now) or not apology:
                        return None
                    return self.journal.add_replies(chat_id, apology, now)

                reply_id = await self.group.run(mark, savepoint=False)
                if query_id is not None:
                    await self._answer(update_id, query_id, None)
                if reply_id is not None:
                    await self.notifications.deliver_reply(reply_id, apology)
        finally:
            self._queued.discard(update_id)
            self._settled.discard(update_id)
            self._failed.discard(update_id)
            self._received.pop(update_id, None)
            self._arrived.pop(update_id, None)
            if query_id is not None and update_id not in self._answered:
                # Every button press is answered once, whatever happened above (a handled
                # re-delivery, a failure, a shutdown): without it the button keeps spinning.
                self._spawn(self._answer(update_id, query_id, None))

    def replay(self) -> int:
        """Queue journaled updates that a previous run fetched but did not handle."""
        pending = self.journal.unhandled()
        for update_id, payload, received_at in pending:
            self._queue(update_id, payload, received_at.timestamp())
        if pending:
            log.info("replaying %d journaled updates", len(pending))
        return len(pending)

    async def poll(self) -> None:
        """Long polling: fetch, journal, then confirm (by asking for the next offset)."""
        offset: int | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                updates = await self._fetch(offset)
            except asyncio.CancelledError:
                raise
            except InvalidToken:
                log.error("Telegram refused the bot token; stopping")
                self._stop.set()
                raise
            except TelegramError as exc:
                failures += 1
                delay = min(POLL_BACKOFF_MAX, 0.5 * 2**failures)
                if isinstance(exc, RetryAfter):
                    delay = retry_after_seconds(exc)
                log.warning("getUpdates failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                continue
            failures = 0
            if not updates:
                continue
            try:
                self.accept(updates)
            except Exception as exc:
                # Not journaled: do not confirm the offset; Telegram sends them again.
                log.error("journaling updates failed (%s); fetching them again", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), POLL_BACKOFF_MAX)
                continue
            offset = int(updates[-1]["update_id"]) + 1

    async def _fetch(self, offset: int | None) -> list[dict[str, Any]]:
        """getUpdates, keeping Telegram's JSON: it is journaled verbatim, parsed once later."""
        bot = self.application.bot
        data: dict[str, Any] = {
            "timeout": POLL_TIMEOUT,
            "allowed_updates": list(ALLOWED_UPDATES),
        }
        if offset is not None:
            data["offset"] = offset
        # Bot.get_updates would build Update objects we would only turn back into JSON;
        # _post is the request it makes (same timeouts, same error mapping).
        result = await bot._post("getUpdates", data, read_timeout=POLL_TIMEOUT + POLL_READ_MARGIN)
        if not isinstance(result, list):
            return []
        return [u for u in result if isinstance(u, dict) and isinstance(u.get("update_id"), int)]

    # -- start-up and shutdown ------------------------------------------------------------

    async def _set_commands_in_background(self) -> None:
        try:
            await self.set_commands()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not set the command menu: %s", type(exc).__name__)

    async def set_commands(self) -> None:
        """The command menus: it, en and the default; admin commands for the secretariat."""
        bot = self.application.bot
        try:
            for lang in ("it", "en", None):
                menu = self.texts.menu(lang or self.settings.language, "commands")
                commands = [BotCommand(name, menu[name]) for name in USER_COMMANDS]
                await bot.set_my_commands(commands, language_code=lang)
            admin_lang = self.settings.secretariat.language
            admin_menu = self.texts.menu(admin_lang, "admin_commands")
            admin = [BotCommand(name, admin_menu[name]) for name in ADMIN_COMMANDS]
            if self.settings.telegram.admin_chat_id:
                await bot.set_my_commands(
                    admin, scope=BotCommandScopeChat(self.settings.telegram.admin_chat_id)
                )
        except TelegramError as exc:
            log.warning("could not set the command menu: %s", type(exc).__name__)
            return
        user_menu = self.texts.menu(admin_lang, "commands")
        for user_id in self.settings.telegram.admin_user_ids:
            # An admin's private chat shows both menus; it fails until they started the bot.
            try:
                await bot.set_my_commands(
                    [BotCommand(n, user_menu[n]) for n in USER_COMMANDS] + admin,
                    scope=BotCommandScopeChat(user_id),
                )
            except TelegramError as exc:
                log.info("admin menu for one admin not set: %s", type(exc).__name__)

    async def initialize(self) -> bool:
        """Check the token with getMe, retrying while Telegram is unreachable; False if stopped."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                await self.application.initialize()
                return True
            except InvalidToken as exc:
                raise TelegramSetupError(
                    "Telegram refused the bot token (telegram.token / TELEGRAM_BOT_TOKEN); "
                    "check it, or get a new one from @BotFather"
                ) from exc
            except NetworkError as exc:
                log.warning(
                    "Telegram unreachable (%s); retrying in %.0fs", type(exc).__name__, delay
                )
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    delay = min(POLL_BACKOFF_MAX, delay * 2)
        return False

    def add_jobs(self, scheduler: Any) -> None:
        """The notification worker and journal pruning on the app's scheduler."""
        self.notifications.add_jobs(scheduler)
        scheduler.add_job(
            self._prune,
            "interval",
            seconds=PRUNE_EVERY.total_seconds(),
            id=PRUNE_JOB,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )

    async def _remove_jobs(self) -> None:
        # The app closes the database after us: no job of ours may still be running then.
        with contextlib.suppress(Exception):
            self.app.scheduler.remove_job(PRUNE_JOB)
        await self.notifications.close()

    async def _prune(self) -> None:
        self.journal.prune(self.clock())

    def stop(self) -> None:
        """Ask run() to return (signal handlers call this)."""
        self._stop.set()

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        """Run until stop(): start-up, replay, polling or webhook, graceful shutdown."""
        if not await self.initialize():
            return
        try:
            self.journal.release_leases(self.clock())
            self.add_jobs(self.app.scheduler)
            self.replay()
            self.notifications.kick()
            if self.settings.telegram.webhook_url:
                await self._start_webhook()
                receiver: asyncio.Task[None] | None = None
            else:
                await self._drop_webhook()
                receiver = asyncio.create_task(self.poll(), name="telegram-polling")
            # Cosmetic, and retried on 5xx: never in the way of replay and polling.
            self._spawn(self._set_commands_in_background())
            if ready is not None:
                ready()
            stopper = asyncio.create_task(self._stop.wait())
            waiting: set[asyncio.Task[Any]] = {stopper}
            if receiver is not None:
                waiting.add(receiver)
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if receiver is not None:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
            stopper.cancel()
            if receiver is not None and receiver in done and receiver.exception():
                raise TelegramSetupError(
                    "Telegram refused the bot token while polling; get a new one from @BotFather"
                )
        finally:
            await self._wind_down()

    async def _wind_down(self) -> None:
        try:
            await self._stop_webhook()
            if not await self.queues.drain(STOP_GRACE):
                log.warning("stopping with updates still being handled; they will be replayed")
                await self.queues.cancel()
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            await self._remove_jobs()
        finally:
            # Whatever joined the last group commit goes to disk before the app closes.
            self.group.flush()
            try:
                await self.application.shutdown()
            except Exception as exc:
                log.warning("shutdown: %s", type(exc).__name__)

    async def _drop_webhook(self) -> None:
        # getUpdates fails with 409 while a webhook is set (for example by an earlier deploy).
        try:
            info = await self.application.bot.get_webhook_info()
            if info.url:
                await self.application.bot.delete_webhook()
        except TelegramError as exc:
            log.warning("could not check the webhook: %s", type(exc).__name__)

    # -- webhook --------------------------------------------------------------------------

    def webhook_secret(self) -> str:
        """The configured secret, else one derived from the token (never logged)."""
        secret = self.settings.telegram.webhook_secret
        if secret:
            return secret
        digest = hashlib.sha256(b"clusterbot-webhook:" + self.settings.telegram.token.encode())
        return digest.hexdigest()[:64]

    async def _start_webhook(self) -> None:
        from bot.channels.telegram_webhook import start_server

        url = self.settings.telegram.webhook_url
        path = urlsplit(url).path or "/"
        self.webhook_server = start_server(
            self, path, self.settings.telegram.webhook_listen, self.settings.telegram.webhook_port
        )
        try:
            await self.application.bot.set_webhook(
                url,
                secret_token=self.webhook_secret(),
                allowed_updates=list(ALLOWED_UPDATES),
            )
        except TelegramError as exc:
            # Retried already (5xx, 429) or refused (a bad URL): the operator must look.
            detail = getattr(exc, "message", "") or type(exc).__name__
            raise TelegramSetupError(
                f"could not set the webhook {url!r} (telegram.webhook_url): {detail}"
            ) from exc

    async def _stop_webhook(self) -> None:
        if self.webhook_server is not None:
            self.webhook_server.stop()
            self.webhook_server = None

    def check_secret(self, header: str | None) -> bool:
        """Constant-time check of the X-Telegram-Bot-Api-Secret-Token header."""
        return header is not None and hmac.compare_digest(
            header.encode(), self.webhook_secret().encode()
        )

    def health(self) -> dict[str, Any]:
        """What GET /healthz reports."""
        row = self.db.execute("SELECT count(*) FROM updates WHERE handled_at IS NULL").fetchone()
        return {"ok": True, "unhandled_updates": int(row[0]), "stopping": self._stop.is_set()}


def render_replies(replies: Sequence[Reply], chat_id: int) -> list[OutMessage]:
    """Engine replies -> HTML messages (split), the buttons on each reply's last piece."""
    out: list[OutMessage] = []
    for reply in replies:
        chunks = to_html_chunks(reply.text, reply.title)
        rows = keyboard(reply.buttons) if reply.buttons else ()
        for i, chunk in enumerate(chunks):
            out.append(OutMessage(chat_id, chunk, rows if i == len(chunks) - 1 else ()))
    return out


def describe(settings: Settings) -> str:
    """One log line about the mode, without the token."""
    mode = "webhook" if settings.telegram.webhook_url else "long polling"
    return f"telegram: {mode} via {urlsplit(settings.telegram.base_url).netloc}"


__all__ = [
    "BOTFATHER_HELP",
    "TelegramChannel",
    "TelegramSetupError",
    "build_application",
    "describe",
    "render_replies",
]
