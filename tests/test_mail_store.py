"""The embedded mail store, and the App delivering through it with the real SMTP client."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aiosmtplib

from bot.app import App
from bot.mail.compose import enquiry_mail, sample_enquiry
from bot.mail.store import MailStore
from bot.settings.load import settings_from_mapping
from bot.storage import open_database
from tests.smtp_support import T0, insert_enquiry, queue_enquiry_mail


async def _wait_for(predicate: Any, what: str) -> None:
    # Polls instead of sleeping a fixed time; the generous bound only avoids a hang.
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_store_writes_eml_and_reports(tmp_path: Path) -> None:
    settings = settings_from_mapping({"data_dir": str(tmp_path / "var")})
    reported: list[Path] = []
    store = MailStore(settings.mail_dir, report=reported.append)
    host, port = await store.start()
    try:
        assert host == "127.0.0.1" and port > 0
        message = enquiry_mail(settings, sample_enquiry())
        await aiosmtplib.send(message, hostname=host, port=port, start_tls=False)
        # A resend of the same message (same Message-ID) replaces the file: no duplicate.
        await aiosmtplib.send(message, hostname=host, port=port, start_tls=False)
    finally:
        await store.stop()
    files = sorted(settings.mail_dir.glob("*.eml"))
    assert len(files) == 1 and reported == [files[0], files[0]]
    assert files[0].name.startswith("ECCP-0001-enquiry-")
    stored = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert stored["Message-ID"] == message["Message-ID"]
    assert stored["Reply-To"].addresses[0].addr_spec == "maria.rossi@example.org"
    assert not list(settings.mail_dir.glob("*.tmp"))


async def test_store_stops_listening(tmp_path: Path) -> None:
    store = MailStore(tmp_path / "mail")
    _, port = await store.start()
    await store.stop()
    try:
        await aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=2).connect()
    except aiosmtplib.SMTPConnectError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the store still accepts connections")


async def test_app_delivers_to_embedded_store_on_kick(tmp_path: Path) -> None:
    settings = settings_from_mapping(
        {"data_dir": str(tmp_path / "var"), "smtp": {"host": ""}}, "test"
    )
    said: list[str] = []
    async with App(settings, report=said.append) as app:
        assert app.mail_store is not None and app.db is not None
        # Nothing polls: no delivery or reminder job while nothing is due.
        assert app.scheduler.get_job("deliveries") is None
        assert app.scheduler.get_job("reminders") is None
        assert app.scheduler.get_job("digest") is not None
        job = app.scheduler.get_job("retention")
        # Late runs still run (once): the database decides what is due.
        assert job.coalesce and job.misfire_grace_time is None and job.max_instances == 1
        assert app.scheduler.get_job("digest").misfire_grace_time >= 3600
        # The first delivery run at start finds nothing; wait for it to finish.
        enquiry = insert_enquiry(app.db)
        queue_enquiry_mail(app.db, settings, enquiry, app.clock())
        app.kick()
        await _wait_for(lambda: list(settings.mail_dir.glob("*.eml")), "the .eml file")
        await _wait_for(
            lambda: next(iter(app.db.query("SELECT status FROM deliveries")))["status"] == "sent",
            "the delivery to be marked sent",
        )
        forwarded = next(iter(app.db.query("SELECT forwarded_at FROM enquiries")))
        assert forwarded["forwarded_at"] is not None
    [path] = settings.mail_dir.glob("*.eml")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert str(message["Subject"]).startswith(f"[{enquiry['ref']}] ")
    assert message["Reply-To"].addresses[0].addr_spec == "maria@example.org"
    assert any(path.name in line for line in said)
    assert not app.scheduler.running


async def test_app_delivers_pending_mail_at_start(tmp_path: Path) -> None:
    """A mail queued before a crash goes out when the app starts again."""
    settings = settings_from_mapping({"data_dir": str(tmp_path / "var")}, "test")
    db = open_database(settings.database_path)
    enquiry = insert_enquiry(db)
    queue_enquiry_mail(db, settings, enquiry, T0)
    db.close()
    async with App(settings):
        await _wait_for(lambda: list(settings.mail_dir.glob("*.eml")), "the .eml file")


async def test_app_shutdown_does_not_wait_for_a_stalled_server(tmp_path: Path) -> None:
    from tests.smtp_support import Handler, SmtpServer

    handler = Handler(hang=asyncio.Event())
    async with SmtpServer(handler) as server:
        settings = settings_from_mapping(
            {
                "data_dir": str(tmp_path / "var"),
                "smtp": {"host": "127.0.0.1", "port": server.port, "security": "none"},
            },
            "test",
        )
        async with App(settings) as app:
            assert app.db is not None and app.mail_store is None
            queue_enquiry_mail(app.db, settings, insert_enquiry(app.db), T0)
            app.kick()
            await _wait_for(lambda: handler.data_calls == 1, "the server to receive DATA")
        # Left unconfirmed: still claimed by the stopped app, to be sent again (same
        # Message-ID) by the next sender, which sees the claim's owner is gone.
        db = open_database(settings.database_path)
        assert next(iter(db.query("SELECT status FROM deliveries")))["status"] == "sending"
        db.close()
        handler.hang.set()
