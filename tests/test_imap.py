"""The IMAP reader against a real IMAP server on loopback (mail-devel), never a mock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from bot.cli import main
from bot.enquiries import get_enquiry
from bot.mail.inbound import watcher as inbox_watcher
from bot.mail.inbound.cursor import inbox_status, load_cursor
from bot.mail.inbound.imap import probe_imap
from bot.mail.inbound.process import InboundResult
from bot.mail.inbound.watcher import InboxWatcher
from bot.settings import Settings
from tests.dialogue_support import open_db
from tests.imap_support import PASSWORD, USER, ImapServer, imap_server, tls_files, tls_proxy
from tests.inbound_support import inbox_settings, reply, submit
from tests.smtp_support import CHAT_DELIVERIES


@pytest.fixture
async def server() -> AsyncIterator[ImapServer]:
    async with imap_server() as running:
        yield running


def _settings(tmp_path: Path, server: ImapServer, **inbox: Any) -> Settings:
    return inbox_settings(
        tmp_path,
        inbox={
            "host": server.host,
            "port": server.port,
            "security": "none",
            "username": USER,
            "password": PASSWORD,
            "timeout": "20s",
            **inbox,
        },
    )


def _count(db: sqlite_utils.Database, sql: str) -> int:
    return int(db.execute(sql).fetchone()[0])


async def test_a_reply_in_the_mailbox_answers_the_enquiry(
    tmp_path: Path, server: ImapServer
) -> None:
    settings = _settings(tmp_path, server)
    db = open_db(settings.database_path)
    enquiry = submit(db, settings)
    raw = reply(db, settings, enquiry)
    await server.deliver(raw)
    results = await InboxWatcher(db, settings).poll_once()
    assert [r.status for r in results] == ["answer"]
    row = get_enquiry(db, enquiry["ref"])
    assert row is not None and row["status"] == "answered"
    assert row["answer"] == "Sì, almeno tre partner."
    (stored,) = db.execute("SELECT raw FROM inbound_mail").fetchall()
    assert stored[0] == raw  # the full original, byte for byte, in the history
    # Polling again finds nothing new.
    assert await InboxWatcher(db, settings).poll_once() == []
    cursor = load_cursor(db, "INBOX")
    assert cursor is not None and cursor.last_uid > 0


async def test_a_restart_mid_poll_neither_skips_nor_repeats(
    tmp_path: Path, server: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, server)
    db = open_db(settings.database_path)
    enquiries = [submit(db, settings, f"u{n}") for n in range(3)]
    for n, enquiry in enumerate(enquiries):
        await server.deliver(reply(db, settings, enquiry, message_id=f"<r{n}@segreteria-eccp.eu>"))
    # The process dies while handling the second message (before its commit).
    real = inbox_watcher.process_mail
    calls = 0

    def dying(*args: Any, **kwargs: Any) -> InboundResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise SystemExit("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(inbox_watcher, "process_mail", dying)
    with pytest.raises(SystemExit):
        await InboxWatcher(db, settings).poll_once()
    monkeypatch.setattr(inbox_watcher, "process_mail", real)
    assert _count(db, "SELECT COUNT(*) FROM inbound_mail") == 1
    # A new process on the same database carries on after the first message.
    db.close()
    db = open_db(settings.database_path)
    results = await InboxWatcher(db, settings).poll_once()
    assert [r.status for r in results] == ["answer", "answer"]
    assert _count(db, "SELECT COUNT(*) FROM inbound_mail") == 3
    assert _count(db, f"SELECT COUNT(*) FROM {CHAT_DELIVERIES} WHERE kind = 'answer'") == 3
    assert _count(db, "SELECT COUNT(*) FROM enquiries WHERE status = 'answered'") == 3


async def test_a_lost_cursor_or_new_uidvalidity_does_not_relay_twice(
    tmp_path: Path, server: ImapServer
) -> None:
    settings = _settings(tmp_path, server)
    db = open_db(settings.database_path)
    enquiry = submit(db, settings)
    await server.deliver(reply(db, settings, enquiry))
    await InboxWatcher(db, settings).poll_once()
    db.execute("UPDATE inbox_cursor SET uidvalidity = uidvalidity + 1")
    results = await InboxWatcher(db, settings).poll_once()
    assert [r.duplicate for r in results] == [True]
    assert _count(db, f"SELECT COUNT(*) FROM {CHAT_DELIVERIES} WHERE kind = 'answer'") == 1


async def test_idle_picks_up_mail_as_it_arrives(tmp_path: Path, server: ImapServer) -> None:
    settings = _settings(tmp_path, server)
    db = open_db(settings.database_path)
    enquiry = submit(db, settings)
    seen: asyncio.Queue[InboundResult] = asyncio.Queue()
    polled = asyncio.Event()

    watcher = InboxWatcher(db, settings, on_result=seen.put_nowait)
    original = watcher.read_new

    async def read_new(client: Any, state: Any) -> list[InboundResult]:
        results = await original(client, state)
        polled.set()
        return results

    watcher.read_new = read_new  # type: ignore[method-assign]
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(polled.wait(), 60)
        await server.deliver(reply(db, settings, enquiry))
        result = await asyncio.wait_for(seen.get(), 60)
        assert result.relayed and result.ref == enquiry["ref"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert inbox_status(db, settings)["last_poll"] is not None


async def test_the_watcher_reconnects_after_the_connection_drops(
    tmp_path: Path, server: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short inbox.timeout: the dropped connection is noticed when a command times out.
    settings = _settings(tmp_path, server, timeout="2s")
    db = open_db(settings.database_path)
    enquiry = submit(db, settings)
    monkeypatch.setattr(inbox_watcher, "BACKOFF_FIRST", timedelta(milliseconds=50))
    connections = 0
    real_connect = inbox_watcher.connect

    async def flaky_connect(*args: Any, **kwargs: Any) -> Any:
        nonlocal connections
        connections += 1
        client = await real_connect(*args, **kwargs)
        if connections == 1:
            client.protocol.transport.close()  # the server "drops" the first connection
        return client

    monkeypatch.setattr(inbox_watcher, "connect", flaky_connect)
    seen: asyncio.Queue[InboundResult] = asyncio.Queue()
    await server.deliver(reply(db, settings, enquiry))
    task = asyncio.create_task(InboxWatcher(db, settings, on_result=seen.put_nowait).run())
    try:
        result = await asyncio.wait_for(seen.get(), 60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert result.relayed and connections >= 2


async def test_probe_reports_the_folder_and_names_the_setting_at_fault(
    tmp_path: Path, server: ImapServer
) -> None:
    problems, line = await probe_imap(_settings(tmp_path, server))
    assert problems == [] and "folder 'INBOX'" in line and "UIDVALIDITY" in line
    problems, _ = await probe_imap(_settings(tmp_path, server, password="wrong"))
    assert len(problems) == 1 and problems[0].startswith("inbox.username/inbox.password:")
    problems, _ = await probe_imap(_settings(tmp_path, server, folder="Missing"))
    assert len(problems) == 1 and problems[0].startswith("inbox.folder:")
    problems, _ = await probe_imap(_settings(tmp_path, server, security="tls"))
    assert len(problems) == 1 and problems[0].startswith("inbox.security:")
    closed = imap_port_closed()
    problems, _ = await probe_imap(_settings(tmp_path, server, port=closed))
    assert len(problems) == 1 and problems[0].startswith("inbox.host:")


def imap_port_closed() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_cli_check_imap_and_inbox_status(
    tmp_path: Path, server: ImapServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "clusterbot.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\n'
        f'[inbox]\nhost = "{server.host}"\nport = {server.port}\nsecurity = "none"\n'
        f'username = "{USER}"\nreply_address = "bot@example.org"\n',
        encoding="utf-8",
    )
    env = pytest.MonkeyPatch()
    env.setenv("IMAP_PASSWORD", PASSWORD)
    try:
        code = await asyncio.to_thread(main, ["check", "--config", str(config), "--imap"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "IMAP OK" in out.out
        env.setenv("IMAP_PASSWORD", "wrong")
        code = await asyncio.to_thread(main, ["check", "--config", str(config), "--imap"])
        out = capsys.readouterr()
        assert code == 1
        errors = [line for line in out.err.splitlines() if line.startswith("clusterbot: error")]
        assert len(errors) == 1
        assert errors[0].startswith("clusterbot: error: inbox.username/inbox.password: login")
    finally:
        env.undo()
    # Read-only commands never create a database: the bot's first start does.
    from bot.storage import open_database

    open_database(tmp_path / "clusterbot.sqlite3").close()
    code = await asyncio.to_thread(main, ["inbox", "status", "--config", str(config)])
    out = capsys.readouterr()
    assert code == 0 and "cursor: none yet" in out.out and "last poll: never" in out.out


async def _watch_until_relayed(
    watcher: InboxWatcher, server: ImapServer, raw: bytes, rounds: int
) -> InboundResult:
    """Run the watcher; after `rounds` reads of the folder deliver `raw`; its result."""
    seen: asyncio.Queue[InboundResult] = asyncio.Queue()
    watcher.on_result = seen.put_nowait
    reads = 0
    enough = asyncio.Event()
    original = watcher.read_new

    async def read_new(client: Any, state: Any) -> list[InboundResult]:
        nonlocal reads
        results = await original(client, state)
        reads += 1
        if reads >= rounds:
            enough.set()
        return results

    watcher.read_new = read_new  # type: ignore[method-assign]
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(enough.wait(), 60)
        await server.deliver(raw)
        return await asyncio.wait_for(seen.get(), 60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_idle_is_renewed_and_still_delivers(tmp_path: Path, server: ImapServer) -> None:
    settings = _settings(tmp_path, server)
    db = open_db(settings.database_path)
    enquiry = submit(db, settings)
    # IDLE renewed every 0.2 s: three reads mean it was ended and re-issued at least twice.
    watcher = InboxWatcher(db, settings, idle_renew=timedelta(milliseconds=200))
    result = await _watch_until_relayed(watcher, server, reply(db, settings, enquiry), 3)
    assert result.relayed


async def test_without_idle_the_folder_is_polled(
    tmp_path: Path, server: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, server, poll_every="1s")
    db = open_db(settings.database_path)
    enquiry = submit(db, settings)
    real_connect = inbox_watcher.connect

    async def without_idle(*args: Any, **kwargs: Any) -> Any:
        # The real client; only its answer to "does the server offer IDLE?" is no.
        client = await real_connect(*args, **kwargs)
        offered = client.has_capability
        client.has_capability = lambda name: name != "IDLE" and offered(name)
        return client

    monkeypatch.setattr(inbox_watcher, "connect", without_idle)
    watcher = InboxWatcher(db, settings)
    result = await _watch_until_relayed(watcher, server, reply(db, settings, enquiry), 2)
    assert result.relayed


async def test_starttls_and_implicit_tls(tmp_path: Path) -> None:
    tls = tls_files(tmp_path)
    async with imap_server(tls) as server:
        starttls = _settings(tmp_path, server, security="starttls")
        problems, line = await probe_imap(starttls, tls_context=tls.client_context())
        assert problems == [] and "IMAP OK" in line
        # A certificate the system does not trust: one line naming the setting.
        problems, _ = await probe_imap(starttls)
        assert len(problems) == 1 and problems[0].startswith("inbox.security: TLS failed")
        async with tls_proxy(server, tls) as secure:
            settings = _settings(tmp_path, secure, security="tls")
            db = open_db(settings.database_path)
            enquiry = submit(db, settings)
            await server.deliver(reply(db, settings, enquiry))
            watcher = InboxWatcher(db, settings, tls_context=tls.client_context())
            assert [r.status for r in await watcher.poll_once()] == ["answer"]
