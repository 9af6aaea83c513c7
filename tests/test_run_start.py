"""`clusterbot run` starting: a wake signal in the start window, a database lost under it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from telegram_standin import BotApiStandIn

from bot.settings.load import load_settings
from bot.storage import open_database
from tests.test_deploy import submit
from tests.test_telegram_crash import ROOT, polling, stop, wait, write_config


def start_run(config: Path, tmp_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`python -m bot run`, as an operator starts it, its output in a log file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "CLUSTERBOT_"))}
    log = (tmp_path / f"bot-{time.monotonic_ns()}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "run", "--config", str(config), *extra],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def test_a_wake_signal_while_starting_does_not_kill_the_bot(tmp_path: Path, api: BotApiStandIn):
    """`chat` or `digest --send` signal the PID in the lock file: from the moment it is
    there the bot survives the signal, and goes on to answer."""
    config = write_config(tmp_path, api)
    lock = tmp_path / "var" / "clusterbot.lock"
    bot = start_run(config, tmp_path)
    try:

        def published() -> bool:
            return bot.poll() is not None or (
                lock.exists() and lock.read_text().strip() == str(bot.pid)
            )

        wait(published, what="the lock file naming the bot")
        # What a command queueing work does, again and again through the whole start.
        signals = 0
        while bot.poll() is None and not polling(api, 0)():
            os.kill(bot.pid, signal.SIGUSR1)
            signals += 1
            time.sleep(0.01)
        assert bot.poll() is None, f"killed by the wake signal (after {signals} signals)"
        assert signals >= 1
        api.push_message(21, "What is the total budget?")
        wait(lambda: api.bot_messages(21) or bot.poll() is not None, what="the answer")
        assert "6" in api.bot_messages(21)[0].text
        os.kill(bot.pid, signal.SIGUSR1)
        assert bot.poll() is None
    finally:
        assert stop(bot) == 0


def test_run_refuses_to_start_over_a_lost_database(tmp_path: Path, api: BotApiStandIn):
    """The data folder shows the bot ran; its database is gone: `run` refuses with one line
    (restore the backup, or --new-database), and starts empty only when told to."""
    config = write_config(tmp_path, api)
    data = tmp_path / "var"
    bot = start_run(config, tmp_path)
    try:
        wait(lambda: polling(api, 0)() or bot.poll() is not None, what="first start polling")
        # Two enquiries while it runs (WAL lets this writer in beside the bot).
        settings = load_settings(config, {})
        db = open_database(settings.database_path, create=False)
        try:
            refs = [submit(db, settings, user=f"u{n}")["ref"] for n in (1, 2)]
        finally:
            db.close()
        assert refs == ["ECCP-0001", "ECCP-0002"]
    finally:
        assert stop(bot) == 0
    assert (data / "clusterbot.instance").exists()
    for name in ("clusterbot.sqlite3", "clusterbot.sqlite3-wal", "clusterbot.sqlite3-shm"):
        (data / name).unlink(missing_ok=True)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "CLUSTERBOT_"))}
    refused = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert f"no database at {data / 'clusterbot.sqlite3'}" in lines[0]
    assert "restore the backup" in lines[0] and "--new-database" in lines[0]
    assert not (data / "clusterbot.sqlite3").exists()

    polls = api.polls_started
    bot = start_run(config, tmp_path, "--new-database")
    try:
        wait(lambda: polling(api, polls)() or bot.poll() is not None, what="restart polling")
        assert bot.poll() is None
        assert (data / "clusterbot.sqlite3").exists()
    finally:
        assert stop(bot) == 0
    # The references continue where the lost database stopped: ECCP-0001 is never reissued.
    db = open_database(settings.database_path, create=False)
    try:
        assert submit(db, settings, user="u3")["ref"] == "ECCP-0003"
    finally:
        db.close()
