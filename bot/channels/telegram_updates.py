"""Receiving Telegram updates: journal first, then run each once in its chat's queue.

1. Every update (long polling or webhook) is journaled in `updates` before its offset is
   confirmed to Telegram (the next getUpdates call) or before the webhook answers 200.
2. A per-chat queue runs it: one chat's updates in order, different chats concurrently.
3. PTB's handlers (applicant or admin) commit its effects, replies and handled mark.
4. An update that keeps failing is quarantined: kept in the journal, reported in the log,
   the admin chat and `clusterbot check`, and skipped, so one bad update never stops the
   bot. "Keeps failing" counts runs that raised past the handlers and runs that began
   after a restart without finishing (the process died while handling it).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import sqlite_utils
from telegram import Update
from telegram.ext import Application

from bot.channels.telegram_admin import plain
from bot.channels.telegram_commit import GroupCommit
from bot.channels.telegram_deliveries import TelegramDeliveries
from bot.channels.telegram_handling import Handling
from bot.channels.telegram_journal import Journal
from bot.channels.telegram_queues import ChatQueues
from bot.channels.telegram_render import ChannelTexts
from bot.deliveries.model import Delivery
from bot.settings import Settings

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ("message", "callback_query")
# Telegram refuses answers to button presses older than about 15 seconds: a press still
# waiting in its chat's queue (behind a 429, say) this long after it arrived is answered
# at once, without a notice, so the button stops spinning.
EARLY_ANSWER_AFTER = 10.0
# Runs of one update that may fail (or die with the process) before it is set aside.
MAX_ATTEMPTS = 3
# Pause before running a failed update again (times its attempts so far).
RETRY_PAUSE = 0.5


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


def _hashable(key: object) -> object:
    # A chat id from a malformed update may be a list or a dict: still one queue per value.
    try:
        hash(key)
    except TypeError:
        return json.dumps(key, sort_keys=True, default=str)
    return key


class UpdateIntake:
    """The journal, the per-chat queues and long polling; the webhook calls `accept`."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        settings: Settings,
        application: Application[Any, Any, Any, Any, Any, Any],
        *,
        texts: ChannelTexts,
        journal: Journal,
        group: GroupCommit,
        queues: ChatQueues,
        handling: Handling,
        notifications: TelegramDeliveries,
        clock: Callable[[], datetime],
        stop: asyncio.Event,
    ) -> None:
        self.db = db
        self.settings = settings
        self.application = application
        self.texts = texts
        self.journal = journal
        self.group = group
        self.queues = queues
        self.handling = handling
        self.notifications = notifications
        self.clock = clock
        self._stop = stop
        self._queued: set[int] = set()
        self._background: set[asyncio.Task[Any]] = set()

    # -- accepting ----------------------------------------------------------------------------

    def accept(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Journal fetched updates (committed before return), then queue the unhandled ones.

        For the webhook, which answers 200 only after this returned; polling uses receive."""
        if not payloads:
            return
        now = self.clock()
        rows = self._rows(payloads)
        # A COMMIT still running first, so that the journal's writes run here and now (a
        # failure raises to the caller instead of waiting for the next group).
        self.group.settle()
        self.group.add(lambda: self.journal.record(rows, now))
        # On disk now, before the caller confirms the offset or answers the webhook. If the
        # COMMIT fails, raise: the webhook answers 500 (Telegram sends it again) and polling
        # does not confirm the offset.
        if not self.group.flush():
            raise RuntimeError("could not journal the updates")
        self._dispatch(payloads, rows)

    async def receive(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Like accept, but the event loop goes on while the journal's COMMIT runs (polling
        confirms the offset only after this returned; a failed COMMIT raises)."""
        if not payloads:
            return
        now = self.clock()
        rows = self._rows(payloads)
        await self.group.run(lambda: self.journal.record(rows, now), savepoint=False)
        self._dispatch(payloads, rows)

    @staticmethod
    def _rows(payloads: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
        return [(int(p["update_id"]), json.dumps(p, ensure_ascii=False)) for p in payloads]

    def _dispatch(
        self, payloads: Sequence[dict[str, Any]], rows: Sequence[tuple[int, str]]
    ) -> None:
        """Queue the journaled updates not handled yet; answer re-delivered button presses."""
        ids = [uid for uid, _ in rows]
        marks = ",".join("?" * len(ids))
        unhandled = {
            row[0]
            for row in self.db.execute(
                "SELECT update_id FROM updates WHERE handled_at IS NULL "
                f"AND quarantined_at IS NULL AND update_id IN ({marks})",
                ids,
            ).fetchall()
        }
        arrived = time.time()
        for uid, payload in zip(ids, payloads, strict=True):
            if uid in unhandled:
                self._queue(uid, payload, arrived, replayed=False)
                continue
            query_id = callback_query_id(payload)
            if query_id is not None and uid not in self.handling.answered:
                # Handled before (a re-delivery): its answer may never have gone out.
                self.spawn(self.handling.answer(uid, query_id, None))

    def replay(self) -> int:
        """Queue journaled updates that a previous run fetched but did not handle."""
        pending = self.journal.unhandled()
        for update_id, payload, received_at in pending:
            self._queue(update_id, payload, received_at.timestamp(), replayed=True)
        if pending:
            log.info("replaying %d journaled updates", len(pending))
        return len(pending)

    def unhandled_count(self) -> int:
        """Journaled updates waiting to be handled (quarantined ones not included)."""
        row = self.db.execute(
            "SELECT count(*) FROM updates WHERE handled_at IS NULL AND quarantined_at IS NULL"
        ).fetchone()
        return int(row[0])

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run a cosmetic side task (cancelled by close())."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Cancel the side tasks."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _queue(self, update_id: int, payload: Any, arrived: float, *, replayed: bool) -> None:
        if update_id in self._queued:
            return
        self._queued.add(update_id)
        if not isinstance(payload, dict):
            payload = {}
        self.queues.submit(
            _hashable(update_key(payload)),
            lambda: self._run(update_id, payload, replayed=replayed),
        )
        query_id = callback_query_id(payload)
        if query_id is not None:
            delay = max(0.0, arrived + EARLY_ANSWER_AFTER - time.time())
            asyncio.get_running_loop().call_later(
                delay, self._answer_if_waiting, update_id, query_id
            )

    def _answer_if_waiting(self, update_id: int, query_id: str) -> None:
        waiting = update_id in self._queued and update_id not in self.handling.answered
        if waiting and not self._stop.is_set():
            self.spawn(self.handling.answer(update_id, query_id, None))

    # -- handling -----------------------------------------------------------------------------

    async def _run(self, update_id: int, payload: dict[str, Any], *, replayed: bool) -> None:
        """Handle one update; a run that raises is repeated, then the update set aside."""
        query_id = callback_query_id(payload)
        try:
            while True:
                if replayed:
                    # Counted on disk before handling: a run that takes the process down
                    # with it is counted all the same.
                    attempts = await self.group.run(
                        lambda: self.journal.count_attempt(update_id), savepoint=False
                    )
                    if attempts > MAX_ATTEMPTS:
                        await self._quarantine(update_id, "the bot stopped while handling it")
                        return
                try:
                    await self._process(update_id, payload)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = f"{type(exc).__name__} while handling it"
                    log.error("update %d could not be handled: %s", update_id, error)
                    attempts = await self.group.run(
                        functools.partial(self.journal.count_attempt, update_id, error),
                        savepoint=False,
                    )
                    if attempts >= MAX_ATTEMPTS:
                        await self._quarantine(update_id, error)
                        return
                replayed = False
                await asyncio.sleep(RETRY_PAUSE * attempts)
        finally:
            self._queued.discard(update_id)
            self.handling.forget(update_id)
            if query_id is not None and update_id not in self.handling.answered:
                # Every button press is answered once, whatever happened above (a handled
                # re-delivery, a failure, a shutdown): without it the button keeps spinning.
                self.spawn(self.handling.answer(update_id, query_id, None))

    async def _process(self, update_id: int, payload: dict[str, Any]) -> None:
        handling = self.handling
        # "Slow" counts from here: time spent waiting in a busy queue is not the reply's.
        handling.started[update_id] = time.monotonic()
        update: Update | None = None
        try:
            update = Update.de_json(payload, self.application.bot)
            await self.application.process_update(update)
        except Exception as exc:
            log.error("update could not be processed: %s", type(exc).__name__)
            handling.failed.add(update_id)
        if update_id in handling.settled:
            return
        # No handler, or a failing one: handled once all the same, never retried forever
        # (the error handler has logged it). A failure gets an apology.
        now = self.clock()
        failed = update_id in handling.failed
        chat = update.effective_chat if update is not None else None
        chat_id = chat.id if chat is not None else 0
        apology = handling.apology(update, chat_id) if failed and update else []

        def mark() -> bool:
            if not self.journal.mark_handled(update_id, now) or not apology:
                return False
            reply.append(self.journal.add_replies(chat_id, apology, now))
            return True

        reply: list[Delivery | None] = []
        apologised = await self.group.run(mark, savepoint=True)
        query_id = callback_query_id(payload)
        if query_id is not None:
            await handling.answer(update_id, query_id, None)
        if apologised:
            await self.notifications.deliver_reply(reply[0], apology)

    async def _quarantine(self, update_id: int, error: str) -> None:
        """Set the update aside and tell the log and the secretariat (no message content)."""
        now = self.clock()
        admin_chat = self.settings.telegram.admin_chat_id
        report = self.texts.get(
            self.settings.secretariat.language, "update_quarantined", update_id=update_id
        )

        messages = plain(admin_chat, report) if admin_chat else []

        def set_aside() -> bool:
            if not self.journal.quarantine(update_id, now, error):
                return False
            if messages:
                posted.append(self.journal.add_replies(admin_chat, messages, now))
            return True

        posted: list[Delivery | None] = []
        if not await self.group.run(set_aside):
            return
        log.error(
            "update %d set aside after repeated failures (%s); it stays in the journal, "
            "`clusterbot check` lists it",
            update_id,
            error,
        )
        if posted:
            await self.notifications.deliver_reply(posted[0], messages)
