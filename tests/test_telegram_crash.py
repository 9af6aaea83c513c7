"""Crash safety: the bot in a subprocess, SIGKILLed and restarted: nothing lost or doubled."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from telegram_standin import BotApiStandIn

from bot.channels.telegram_limits import MAX_IN_FLIGHT

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ("What is the total budget?", "When is the deadline?", "/help")


def write_config(tmp_path: Path, api: BotApiStandIn) -> Path:
    """Settings for the subprocess: the stand-in, data under tmp_path."""
    config = tmp_path / "clusterbot.toml"
    config.write_text(
        f'language = "en"\ndata_dir = "{tmp_path / "var"}"\n\n'
        f'[telegram]\ntoken = "{api.token}"\nbase_url = "{api.base_url}"\n'
        '[smtp]\nhost = "embedded"\n',
        encoding="utf-8",
    )
    return config


UNSENT_CHAT = (
    "SELECT count(*) FROM deliveries WHERE transport = 'telegram' "
    "AND status IN ('queued', 'sending', 'failed-temporary')"
)


def start_bot(config: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    """`python -m bot run`, as an operator starts it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "CLUSTERBOT_"))}
    log = (tmp_path / f"bot-{time.monotonic_ns()}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait(predicate: Callable[[], Any], limit: float = 30.0, what: str = "") -> None:
    """Poll until predicate() holds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.02)


def query(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the bot's database from outside (WAL lets readers in while it writes)."""
    path = tmp_path / "var" / "clusterbot.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []


def count(tmp_path: Path, sql: str) -> int:
    """A single count."""
    rows = query(tmp_path, sql)
    return int(rows[0][0]) if rows else 0


def polling(api: BotApiStandIn, before: int) -> Callable[[], bool]:
    """True once the bot began a new getUpdates call."""
    return lambda: api.polls_started > before


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM and wait: the graceful path."""
    process.send_signal(signal.SIGTERM)
    return process.wait(30)


def test_sigkill_after_fetch_before_handling_loses_nothing(tmp_path: Path, api: BotApiStandIn):
    """Fetched and confirmed to Telegram, then SIGKILL: the restart handles each exactly once."""
    config = write_config(tmp_path, api)
    users = [11, 12, 13, 14, 15]
    bot = start_bot(config, tmp_path)
    # Telegram stalls on sendMessage: each chat's queue stops at its first reply, so the
    # later updates are fetched and journaled but not handled when the kill strikes. The
    # stalled calls are never answered (the bot that made them is dead).
    with api.hold("sendMessage", drop=True):
        try:
            wait(polling(api, 0), what="first getUpdates")
            ids = [api.push_message(user, text) for user in users for text in QUESTIONS]
            # Journaled, and confirmed to Telegram (the stand-in dropped them) ...
            wait(
                lambda: count(tmp_path, "SELECT count(*) FROM updates") == len(ids),
                what="journal",
            )
            wait(lambda: api.pending_updates() == 0, what="offset confirmed")
            wait(lambda: api.waiting.get("sendmessage", 0) >= MAX_IN_FLIGHT, what="stalled")
            # ... but mostly not handled: every chat waits behind its first reply.
            handled = "SELECT count(*) FROM updates WHERE handled_at IS NOT NULL"
            assert count(tmp_path, handled) <= len(users)
            assert api.calls("sendMessage") == []
        finally:
            bot.send_signal(signal.SIGKILL)
            bot.wait(10)

    polls = api.polls_started
    bot = start_bot(config, tmp_path)
    try:
        # Running (signal handlers in place) before anything is checked.
        wait(polling(api, polls), what="restarted bot polling")
        wait(
            lambda: (
                count(tmp_path, "SELECT count(*) FROM updates WHERE handled_at IS NULL") == 0
                and count(tmp_path, UNSENT_CHAT) == 0
            ),
            what="all handled after restart",
        )
        handled = {row[0] for row in query(tmp_path, "SELECT update_id FROM updates")}
        assert handled == set(ids)
        for user in users:
            texts = [m.text for m in api.bot_messages(user)]
            assert len(texts) == len(QUESTIONS), texts
        # Two FAQ look-ups per user, each logged once: handled exactly once.
        assert count(tmp_path, "SELECT count(*) FROM faq_log") == 2 * len(users)
    finally:
        assert stop(bot) == 0


def test_random_sigkills_handle_every_update_exactly_once(tmp_path: Path, api: BotApiStandIn):
    """Kill at random moments while a crowd writes; in the end each update counted once."""
    config = write_config(tmp_path, api)
    rng = random.Random(5)
    users = list(range(100, 112))
    ids: list[int] = []
    for _round in range(3):
        # Sometimes a slow Telegram, so kills also strike while replies are on the wire.
        api.latency = rng.choice([0.0, 0.05])
        bot = start_bot(config, tmp_path)
        wait(polling(api, api.polls_started), what="bot polling")
        for user in users:
            ids.append(api.push_message(user, rng.choice(QUESTIONS[:2])))
        time.sleep(rng.uniform(0.05, 0.6))
        bot.send_signal(signal.SIGKILL)
        bot.wait(10)
    api.latency = 0.0
    polls = api.polls_started
    bot = start_bot(config, tmp_path)
    try:
        # Running (signal handlers in place) before anything is checked.
        wait(polling(api, polls), what="restarted bot polling")
        wait(
            lambda: (
                count(tmp_path, "SELECT count(*) FROM updates WHERE handled_at IS NULL") == 0
                and count(tmp_path, "SELECT count(*) FROM updates") == len(ids)
                and count(tmp_path, UNSENT_CHAT) == 0
            ),
            limit=60,
            what="everything handled",
        )
        # Each question went through the engine exactly once.
        assert count(tmp_path, "SELECT count(*) FROM faq_log") == len(ids)
        for user in users:
            # At least one answer per question (a kill between send and "sent" may repeat one).
            assert len(api.bot_messages(user)) >= len(ids) // len(users)
        # Each message is marked sent as soon as Telegram accepted it: a kill repeats at most
        # the few that were on the wire (MAX_IN_FLIGHT) when it struck, never whole answers.
        sent = sum(len(api.bot_messages(user)) for user in users)
        assert sent <= len(ids) + 3 * MAX_IN_FLIGHT, sent
    finally:
        assert stop(bot) == 0
