"""The delivery queue: migration from the last release, leases between senders, the run
lock, the hourly cap on enquiry mails, and reminders at their exact instant."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bot import instance
from bot.deliveries import store
from bot.deliveries.worker import Worker
from bot.settings import Settings
from bot.storage import open_database, to_iso, utc_now
from tests.smtp_support import (
    T0,
    Handler,
    SmtpServer,
    deliver_due,
    insert_enquiry,
    make_settings,
    queue_enquiry_mail,
)

ROOT = Path(__file__).resolve().parent.parent
RELEASE_SQL = ROOT / "tests" / "data" / "release-116fcbc.sql"


async def _until(predicate: Callable[[], bool], what: str, within: float = 30.0) -> None:
    # Waits for a condition (never a fixed sleep); the bound only turns a hang into a failure.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- migration


def _release_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(RELEASE_SQL.read_text())
    conn.close()


def test_upgrade_moves_every_outbox_row_into_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "var" / "clusterbot.sqlite3"
    path.parent.mkdir()
    _release_db(path)
    old = sqlite3.connect(path)
    old.row_factory = sqlite3.Row
    outbox = [dict(row) for row in old.execute("SELECT * FROM outbox ORDER BY id")]
    old.close()
    assert {row["status"] for row in outbox} == {"pending", "sent", "failed"}
    db = open_database(path)
    tables = {row[0] for row in db.conn.execute("SELECT name FROM sqlite_master")}
    assert "outbox" not in tables
    moved = {d.id: d for d in store.list_deliveries(db, None, "smtp")}
    assert sorted(moved) == [row["id"] for row in outbox]  # none lost, ids kept
    expected = {"sent": "sent", "failed": "dead"}
    for row in outbox:
        delivery = moved[row["id"]]
        assert delivery.idempotency_key == row["message_id"]
        assert delivery.payload == row["raw"]  # byte-identical: the retry sends the same mail
        assert (delivery.sender, delivery.recipient) == (row["mail_from"], row["rcpt_to"])
        assert (delivery.kind, delivery.enquiry_id) == (row["kind"], row["enquiry_id"])
        assert delivery.attempts == row["attempts"]
        want = expected.get(row["status"]) or ("failed-temporary" if row["attempts"] else "queued")
        assert delivery.status == want
    # `deliveries retry` works on the ids operators saw under `outbox list`.
    [dead] = [row["id"] for row in outbox if row["status"] == "failed"]
    assert store.requeue(db, dead, utc_now()) == [dead]
    db.close()


def test_upgrade_moves_every_notifications_row_into_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "var" / "clusterbot.sqlite3"
    path.parent.mkdir()
    _release_db(path)
    old = sqlite3.connect(path)
    old.row_factory = sqlite3.Row
    notes = [dict(row) for row in old.execute("SELECT * FROM notifications ORDER BY id")]
    old.close()
    assert {row["status"] for row in notes} == {"pending", "sent", "failed", "skipped"}
    db = open_database(path)
    tables = {row[0] for row in db.conn.execute("SELECT name FROM sqlite_master")}
    assert "notifications" not in tables
    moved = {d.idempotency_key: d for d in store.list_deliveries(db) if d.transport != "smtp"}
    assert sorted(moved) == sorted(f"notification:{row['id']}" for row in notes)  # none lost
    expected = {"sent": "sent", "failed": "dead", "skipped": "cancelled"}
    for row in notes:
        delivery = moved[f"notification:{row['id']}"]
        assert (delivery.transport, delivery.kind) == (row["channel"], row["kind"])
        assert (delivery.recipient, delivery.payload) == (row["chat_id"], row["text"])
        assert delivery.enquiry_id == row["enquiry_id"] and delivery.attempts == row["attempts"]
        want = expected.get(row["status"]) or ("failed-temporary" if row["attempts"] else "queued")
        assert delivery.status == want
        if row["sent_message_id"] is not None:
            assert delivery.sent_ref == str(row["sent_message_id"])
    db.close()


async def test_upgraded_queue_is_delivered_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "var" / "clusterbot.sqlite3"
    path.parent.mkdir()
    _release_db(path)
    old = sqlite3.connect(path)
    pending = dict(
        old.execute("SELECT message_id, raw FROM outbox WHERE status = 'pending'").fetchall()
    )
    old.close()
    db = open_database(path)
    async with SmtpServer() as server:
        settings = make_settings(tmp_path, smtp={"port": server.port})
        report = await deliver_due(db, settings, T0 + timedelta(days=30))
    got = {r.message["Message-ID"]: r.data for r in server.handler.received}
    assert report.failed == 0 and set(got) == set(pending)
    for key, raw in pending.items():
        assert got[key].replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    db.close()


# ---------------------------------------------------------------- two senders


def _finished_pid() -> int:
    """The PID of a process that has ended."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip())


async def test_two_senders_with_a_slow_server_never_send_a_mail_twice(tmp_path: Path) -> None:
    slow = Handler(hang=asyncio.Event())
    async with SmtpServer(slow) as server:
        settings = make_settings(tmp_path, smtp={"port": server.port})
        first_db = open_database(settings.database_path)
        ids = [
            queue_enquiry_mail(first_db, settings, insert_enquiry(first_db), T0) for _ in range(5)
        ]
        second_db = open_database(settings.database_path)
        # The bot's worker starts on the backlog and stalls on the slow server...
        bot_run = asyncio.create_task(deliver_due(first_db, settings, T0))
        await _until(lambda: slow.data_calls == 1, "the first DATA")
        # ...while `digest --send` (another sender, another connection) delivers too.
        other = await deliver_due(second_db, settings, T0)
        assert other.attempted == 0  # everything due is claimed by the first sender
        slow.hang.set()
        first = await bot_run
        again = await deliver_due(second_db, settings, T0 + timedelta(hours=1))
    keys = [r.message["Message-ID"] for r in server.handler.received]
    assert len(keys) == len(set(keys)) == 5
    assert first.sent == 5 and again.attempted == 0
    assert [store.get(first_db, i).status for i in ids] == ["sent"] * 5  # type: ignore[union-attr]
    first_db.close()
    second_db.close()


async def test_a_crashed_senders_claim_is_taken_over_with_the_same_message_id(
    tmp_path: Path,
) -> None:
    async with SmtpServer() as server:
        settings = make_settings(tmp_path, smtp={"port": server.port})
        db = open_database(settings.database_path)
        delivery_id = queue_enquiry_mail(db, settings, insert_enquiry(db), T0)
        # A sender in another process claimed it, then died (its PID no longer exists).
        owner = f"{os.uname().nodename}:{_finished_pid()}:cafe"
        claimed = store.claim(
            db, owner=owner, now=T0, lease=timedelta(hours=1), limit=10, transports=["smtp"]
        )
        assert [d.id for d in claimed] == [delivery_id]
        report = await deliver_due(db, settings, T0)
    assert report.sent == 1
    [received] = server.handler.received
    assert received.message["Message-ID"] == claimed[0].idempotency_key
    db.close()


def test_an_expired_lease_is_claimable_and_only_its_owner_records(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    db = open_database(settings.database_path)
    queue_enquiry_mail(db, settings, insert_enquiry(db), T0)
    lease = timedelta(minutes=1)
    [mine] = store.claim(
        db, owner="elsewhere:1:a", now=T0, lease=lease, limit=5, transports=["smtp"]
    )
    assert (
        store.claim(
            db, owner="elsewhere:2:b", now=T0 + lease / 2, lease=lease, limit=5, transports=["smtp"]
        )
        == []
    )
    [taken] = store.claim(
        db, owner="elsewhere:2:b", now=T0 + lease * 2, lease=lease, limit=5, transports=["smtp"]
    )
    assert taken.id == mine.id and taken.idempotency_key == mine.idempotency_key
    with db.conn:
        assert not store.record_sent(db, mine, "elsewhere:1:a", T0)
        assert store.record_sent(db, taken, "elsewhere:2:b", T0)
    db.close()


def test_a_backlog_is_claimed_oldest_first_whatever_each_retry_time(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    db = open_database(settings.database_path)
    for _ in range(3):
        queue_enquiry_mail(db, settings, insert_enquiry(db), T0)
    ids = [row[0] for row in db.conn.execute("SELECT id FROM deliveries ORDER BY id")]
    # After an outage each row got its own jittered retry time: the newest is due first.
    with db.conn:
        for offset, delivery_id in enumerate(reversed(ids)):
            db.conn.execute(
                "UPDATE deliveries SET next_attempt_at = ? WHERE id = ?",
                (to_iso(T0 + timedelta(seconds=offset)), delivery_id),
            )
    later = T0 + timedelta(minutes=5)
    claimed = store.claim(
        db, owner="here:1:a", now=later, lease=timedelta(minutes=1), limit=2, transports=["smtp"]
    )
    assert [d.id for d in claimed] == ids[:2]
    db.close()


# ---------------------------------------------------------------- the run lock


def test_a_second_run_refuses_naming_the_holders_pid(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    # A well-formed token and a mail choice: `run` checks both before taking the lock.
    config.write_text(
        f'data_dir = "{tmp_path / "var"}"\n[telegram]\ntoken = "1:{"x" * 35}"\n'
        '[smtp]\nhost = "embedded"\n'
    )
    settings = make_settings(tmp_path)
    with instance.acquire(settings):
        env = {**os.environ, "CLUSTERBOT_CONFIG": str(config)}
        done = subprocess.run(
            [sys.executable, "-m", "bot", "run"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"PID {os.getpid()}" in lines[0], done.stderr
    assert "already using" in lines[0] and "Traceback" not in done.stderr
    # Released: the data directory is free again.
    assert instance.holder(settings) is None


async def test_chat_on_a_held_data_dir_queues_and_wakes_the_holder(tmp_path: Path) -> None:
    from bot.app import App

    settings = make_settings(tmp_path, smtp={"host": ""})
    script = textwrap.dedent(f"""
        import signal, sys, time
        from bot import instance
        from bot.settings.load import settings_from_mapping
        data = {{"data_dir": {str(settings.data_dir)!r}}}
        lock = instance.acquire(settings_from_mapping(data))
        signal.signal(signal.SIGUSR1, lambda *a: (print("woken", flush=True), sys.exit(0)))
        print("ready", flush=True)
        time.sleep(120)
    """)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    try:
        assert holder.stdout is not None
        assert (await holder.stdout.readline()).strip() == b"ready"
        async with App(settings) as app:
            assert app.instance_holder == holder.pid and app.worker is None
            assert app.db is not None
            queue_enquiry_mail(app.db, settings, insert_enquiry(app.db), app.clock())
            app.kick()
            line = await asyncio.wait_for(holder.stdout.readline(), 30)
            assert not list(settings.mail_dir.glob("*.eml"))  # left to the holder
        assert line.strip() == b"woken"
    finally:
        if holder.returncode is None:
            holder.send_signal(signal.SIGTERM)
        await asyncio.wait_for(holder.wait(), 30)


# ---------------------------------------------------------------- the hourly cap


async def test_enquiry_mails_beyond_the_hourly_cap_wait_in_order(tmp_path: Path) -> None:
    async with SmtpServer() as server:
        settings = make_settings(
            tmp_path, smtp={"port": server.port}, enquiries={"max_mails_per_hour": 2}
        )
        db = open_database(settings.database_path)
        ids = [queue_enquiry_mail(db, settings, insert_enquiry(db), T0) for _ in range(5)]
        first = await deliver_due(db, settings, T0)
        assert first.sent == 2 and store.count_waiting(db, "smtp", "enquiry") == 3
        statuses = [store.get(db, i).status for i in ids]  # type: ignore[union-attr]
        assert statuses == ["sent", "sent", "queued", "queued", "queued"]
        # The worker's next wake is when the hour since the first mail is over.
        worker = Worker(db, [], caps={("smtp", "enquiry"): 2}, clock=lambda: T0)
        assert worker.next_wake() is None  # no transport registered: nothing to wake for
        later = await deliver_due(db, settings, T0 + timedelta(minutes=61))
        assert later.sent == 2
    assert len(server.handler.received) == 4
    db.close()


def test_the_digest_says_how_many_enquiry_mails_wait(tmp_path: Path) -> None:
    from bot.jobs.digest import build_digest
    from bot.mail.compose import digest_mail

    settings = make_settings(tmp_path, enquiries={"max_mails_per_hour": 2})
    db = open_database(settings.database_path)
    for _ in range(3):
        queue_enquiry_mail(db, settings, insert_enquiry(db), T0)
    digest = build_digest(db, settings, T0 + timedelta(minutes=5))
    assert digest.waiting_mails == 3
    body = digest_mail(settings, digest).get_body(("plain",)).get_content()
    assert "3" in body and "max_mails_per_hour" in body
    db.close()


# ---------------------------------------------------------------- reminders on time


def _reminder_settings(tmp_path: Path, port: int) -> Settings:
    return make_settings(
        tmp_path,
        smtp={"port": port},
        reminders={"first_after": "3s", "repeat_every": "1d", "max_count": 2},
    )


async def test_a_reminder_goes_out_at_its_due_instant(tmp_path: Path) -> None:
    from bot.app import App

    async with SmtpServer() as server:
        settings = _reminder_settings(tmp_path, server.port)
        async with App(settings) as app:
            assert app.db is not None
            queue_enquiry_mail(app.db, settings, insert_enquiry(app.db), app.clock())
            app.kick()
            db = app.db
            await _until(
                lambda: (
                    db.execute("SELECT forwarded_at FROM enquiries").fetchone()[0]
                    and app.scheduler.get_job("reminders") is not None
                ),
                "the enquiry mail to be recorded and its reminder scheduled",
            )
            forwarded = db.execute("SELECT forwarded_at FROM enquiries").fetchone()[0]
            # Scheduled for the instant it is due, not found by a poll.
            job = app.scheduler.get_job("reminders")
            from bot.storage import from_iso

            due = from_iso(forwarded) + timedelta(seconds=3)
            assert abs((job.next_run_time - due).total_seconds()) < 0.5
            await _until(lambda: len(server.handler.received) == 2, "the reminder")
        kinds = [r.message["X-Clusterbot-Kind"] for r in server.handler.received]
    assert kinds == ["enquiry", "reminders"]  # grouped by default


async def test_a_kill_between_reminder_due_and_sent_neither_loses_nor_doubles_it(
    tmp_path: Path,
) -> None:
    from bot.app import App

    # The reminder (the second mail) stalls in DATA: the process dies mid-send.
    handler = Handler(hang=asyncio.Event(), hang_from=2)
    async with SmtpServer(handler) as server:
        settings = _reminder_settings(tmp_path, server.port)
        db = open_database(settings.database_path)
        enquiry = insert_enquiry(db)
        queue_enquiry_mail(db, settings, enquiry, utc_now())
        db.close()
        script = textwrap.dedent(f"""
            import asyncio
            from bot.app import App
            from bot.settings.load import settings_from_mapping
            settings = settings_from_mapping({{
                "data_dir": {str(settings.data_dir)!r},
                "smtp": {{"host": "127.0.0.1", "port": {server.port}, "security": "none"}},
                "reminders": {{"first_after": "3s", "repeat_every": "1d", "max_count": 2}},
            }})
            async def main():
                async with App(settings):
                    await asyncio.Event().wait()
            asyncio.run(main())
        """)
        bot = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT)
        try:
            await _until(lambda: handler.data_calls == 2, "the reminder's DATA", within=60)
        finally:
            bot.kill()
            await asyncio.wait_for(bot.wait(), 30)
        # Later DATA commands pass; the one of the killed process never completes.
        handler.hang = None
        db = open_database(settings.database_path)
        [reminder] = [d for d in store.list_deliveries(db) if d.kind in ("reminder", "reminders")]
        assert reminder.status == "sending"  # claimed by the dead process
        count = db.execute("SELECT reminder_count FROM enquiries").fetchone()[0]
        assert count == 1
        db.close()
        async with App(settings) as app:
            assert app.db is not None
            await _until(
                lambda: store.get(app.db, reminder.id).status == "sent",  # type: ignore[union-attr, arg-type]
                "the reminder to be sent after the restart",
            )
            count = app.db.execute("SELECT reminder_count FROM enquiries").fetchone()[0]
            reminders = [
                d for d in store.list_deliveries(app.db) if d.kind in ("reminder", "reminders")
            ]
    received = [r.message for r in handler.received]
    assert [m["X-Clusterbot-Kind"] for m in received] == ["enquiry", "reminders"]
    assert received[1]["Message-ID"] == reminder.idempotency_key
    assert count == 1 and len(reminders) == 1


async def test_a_retry_is_woken_on_the_loop_at_its_next_attempt(tmp_path: Path) -> None:
    from bot.app import App

    # In debug mode asyncio refuses a wake from another thread (the scheduler's thread pool
    # runs plain-function jobs): the worker would never hear its retry's date job.
    asyncio.get_running_loop().set_debug(True)
    async with SmtpServer() as server:
        server.handler.data_replies.append("451 4.3.0 try again later")
        settings = make_settings(tmp_path, smtp={"port": server.port})
        async with App(settings) as app:
            assert app.db is not None
            queue_enquiry_mail(app.db, settings, insert_enquiry(app.db), app.clock())
            app.kick()
            db = app.db
            await _until(
                lambda: db.execute("SELECT attempts FROM deliveries").fetchone()[0] >= 1,
                "the first, refused attempt",
            )
            await _until(
                lambda: db.execute("SELECT status FROM deliveries").fetchone()[0] == "sent",
                "the retry's delivery to be recorded",
            )
    assert server.handler.data_calls == 2
    assert len(server.handler.received) == 1
