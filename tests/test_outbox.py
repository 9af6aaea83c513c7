"""The outbox worker against a real aiosmtpd server: success, faults, TLS, operator tools."""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from bot.mail.compose import enquiry_mail, outbox_row
from bot.mail.outbox import (
    RETRY_BASE,
    RETRY_CAP,
    OutboxError,
    deliver_due,
    failed_problems,
    insert_outbox,
    list_outbox,
    requeue,
    retry_delay,
)
from bot.settings import Settings
from bot.storage import from_iso, open_database
from tests.smtp_support import (
    T0,
    Handler,
    SmtpServer,
    audit_events,
    free_port,
    insert_enquiry,
    make_settings,
    outbox,
    queue_enquiry_mail,
)

LATER = timedelta(hours=3)  # beyond any backoff


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Any]:
    database = open_database(tmp_path / "db.sqlite3")
    yield database
    database.close()


def _settings(tmp_path: Path, server: SmtpServer | None = None, **extra: Any) -> Settings:
    smtp = {"port": server.port if server else free_port(), **extra.pop("smtp", {})}
    return make_settings(tmp_path, smtp=smtp, **extra)


def _queue(db: Any, settings: Settings, **fields: Any) -> tuple[dict[str, Any], int]:
    enquiry = insert_enquiry(db, **fields)
    return enquiry, queue_enquiry_mail(db, settings, enquiry, T0)


async def test_delivers_and_marks_forwarded(tmp_path: Path, db: Any) -> None:
    async with SmtpServer() as server:
        settings = _settings(tmp_path, server)
        enquiry, outbox_id = _queue(db, settings)
        row = outbox(db, outbox_id)
        report = await deliver_due(db, settings, T0)
    assert (report.sent, report.retried, report.failed) == (1, 0, 0)
    sent = outbox(db, outbox_id)
    assert sent["status"] == "sent" and sent["attempts"] == 1 and sent["sent_at"]
    [received] = server.handler.received
    assert received.mail_from == "noreply@example.org"
    assert received.rcpt_tos == ["segreteria@example.org"]
    assert received.message["Message-ID"] == row["message_id"]
    assert received.message["Reply-To"].addresses[0].addr_spec == "maria@example.org"
    forwarded = next(iter(db.query("SELECT * FROM enquiries WHERE id = ?", [enquiry["id"]])))
    assert forwarded["forwarded_at"] is not None
    [audit] = audit_events(db, "forwarded")
    assert audit["ref"] == enquiry["ref"] and audit["actor"] == "system"


async def test_not_due_rows_wait(tmp_path: Path, db: Any) -> None:
    async with SmtpServer() as server:
        settings = _settings(tmp_path, server)
        _, outbox_id = _queue(db, settings)
        report = await deliver_due(db, settings, T0 - timedelta(seconds=1))
    assert report.attempted == 0 and not server.handler.received
    assert outbox(db, outbox_id)["status"] == "pending"


async def test_one_connection_per_batch(tmp_path: Path, db: Any) -> None:
    async with SmtpServer() as server:
        settings = _settings(tmp_path, server)
        ids = [_queue(db, settings)[1] for _ in range(5)]
        report = await deliver_due(db, settings, T0)
    assert report.sent == 5 and server.connections == 1
    assert [outbox(db, i)["status"] for i in ids] == ["sent"] * 5
    ids_received = [r.message["Message-ID"] for r in server.handler.received]
    assert ids_received == [outbox(db, i)["message_id"] for i in ids]


async def test_server_down_then_up(tmp_path: Path, db: Any) -> None:
    port = free_port()
    settings = _settings(tmp_path, smtp={"port": port})
    _, outbox_id = _queue(db, settings)
    report = await deliver_due(db, settings, T0)
    assert (report.sent, report.retried) == (0, 1)
    row = outbox(db, outbox_id)
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "cannot connect" in row["last_error"]
    assert from_iso(row["next_attempt_at"]) > T0
    # Not due again before the backoff expires.
    assert (await deliver_due(db, settings, T0 + timedelta(seconds=1))).attempted == 0
    async with SmtpServer(port=port) as server:
        report = await deliver_due(db, settings, T0 + LATER)
    assert report.sent == 1
    assert outbox(db, outbox_id)["status"] == "sent"
    assert server.handler.received[0].message["Message-ID"] == row["message_id"]


async def test_451_three_times_then_ok(tmp_path: Path, db: Any) -> None:
    handler = Handler(data_replies=["451 4.3.0 try again later"] * 3)
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server)
        _, outbox_id = _queue(db, settings)
        message_id = outbox(db, outbox_id)["message_id"]
        raw = outbox(db, outbox_id)["raw"]
        now = T0
        delays = []
        for attempt in range(1, 4):
            report = await deliver_due(db, settings, now, rng=random.Random(attempt))
            assert report.retried == 1
            row = outbox(db, outbox_id)
            assert row["status"] == "pending" and row["attempts"] == attempt
            assert row["last_error"].startswith("451")
            assert row["message_id"] == message_id and row["raw"] == raw
            due = from_iso(row["next_attempt_at"])
            delays.append(due - now)
            now = due
        report = await deliver_due(db, settings, now)
    assert report.sent == 1
    row = outbox(db, outbox_id)
    assert row["status"] == "sent" and row["attempts"] == 4
    assert handler.data_calls == 4
    [received] = handler.received
    assert received.message["Message-ID"] == message_id
    # Exponential: each wait is at least the previous one's lower bound doubled.
    assert delays[0] <= RETRY_BASE and delays[2] >= RETRY_BASE * 2


async def test_550_fails_permanently_and_is_reported(tmp_path: Path, db: Any) -> None:
    handler = Handler(data_replies=["550 5.7.1 message rejected as spam"])
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server, telegram={"admin_chat_id": -1001})
        enquiry, outbox_id = _queue(db, settings)
        report = await deliver_due(db, settings, T0)
        assert report.failed == 1
        row = outbox(db, outbox_id)
        assert row["status"] == "failed"
        assert "550" in row["last_error"] and "spam" in row["last_error"]
        # No more attempts, whatever the time.
        again = await deliver_due(db, settings, T0 + LATER)
    assert outbox(db, outbox_id)["status"] == "failed"
    [audit] = audit_events(db, "mail_failed")
    assert audit["ref"] == enquiry["ref"]
    assert json.loads(audit["detail"])["code"] == "550 5.7.1"
    assert "Maria" not in audit["detail"]
    [note] = db.query("SELECT * FROM notifications")
    assert note["kind"] == "mail_failed" and note["chat_id"] == "-1001"
    assert enquiry["ref"] in note["text"] and f"outbox retry {outbox_id}" in note["text"]
    # A message-level refusal also mails a notice to the secretariat (sent by the 2nd run).
    notices = list(db.query("SELECT * FROM outbox WHERE kind = 'failure'"))
    assert len(notices) == 1 and again.sent == 1
    assert failed_problems(db) and str(outbox_id) in failed_problems(db)[0]
    forwarded = next(iter(db.query("SELECT forwarded_at FROM enquiries")))
    assert forwarded["forwarded_at"] is None


async def test_550_without_admin_chat_has_no_notification(tmp_path: Path, db: Any) -> None:
    handler = Handler(refuse_rcpt={"segreteria@example.org": "550 5.1.1 no such user"})
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server)
        _, outbox_id = _queue(db, settings)
        report = await deliver_due(db, settings, T0)
    assert report.failed == 1
    assert outbox(db, outbox_id)["status"] == "failed"
    assert "no such user" in outbox(db, outbox_id)["last_error"]
    assert list(db.query("SELECT * FROM notifications")) == []
    # The recipient itself is refused: a notice to it would fail too, so none is queued.
    assert list(db.query("SELECT * FROM outbox WHERE kind = 'failure'")) == []


async def test_disconnect_during_data_retries_same_message(tmp_path: Path, db: Any) -> None:
    handler = Handler(drop_in_data=1)
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server)
        _, first = _queue(db, settings)
        _, second = _queue(db, settings)
        report = await deliver_due(db, settings, T0)
        # The first mail's fate is unknown: retried later. The second goes over a new connection.
        assert report.retried == 1 and report.sent == 1
        assert outbox(db, first)["status"] == "pending"
        assert "connection lost" in outbox(db, first)["last_error"]
        report = await deliver_due(db, settings, T0 + LATER)
    assert report.sent == 1
    assert outbox(db, first)["status"] == "sent"
    ids = {r.message["Message-ID"] for r in handler.received}
    assert ids == {outbox(db, first)["message_id"], outbox(db, second)["message_id"]}


async def test_partial_recipient_refusal_is_detected(tmp_path: Path, db: Any) -> None:
    handler = Handler(refuse_rcpt={"gone@example.org": "550 5.1.1 mailbox unavailable"})
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server, telegram={"admin_chat_id": 42})
        enquiry = insert_enquiry(db)
        message = enquiry_mail(settings, enquiry)
        message["Cc"] = "gone@example.org"
        outbox_id = insert_outbox(db, outbox_row(message, "enquiry", enquiry["id"], T0))
        report = await deliver_due(db, settings, T0)
    assert report.sent == 1 and report.partial == 1
    row = outbox(db, outbox_id)
    assert row["status"] == "sent"
    assert "gone@example.org" in row["last_error"] and "550" in row["last_error"]
    assert handler.received[0].rcpt_tos == ["segreteria@example.org"]
    [audit] = audit_events(db, "mail_failed")
    assert json.loads(audit["detail"])["partial"] is True
    [note] = db.query("SELECT * FROM notifications")
    assert note["kind"] == "mail_failed"


async def test_starttls_required_but_not_offered(tmp_path: Path, db: Any) -> None:
    async with SmtpServer() as server:
        settings = _settings(
            tmp_path, server, smtp={"security": "starttls", "username": "u", "password": "secret"}
        )
        _, outbox_id = _queue(db, settings)
        report = await deliver_due(db, settings, T0)
    assert report.sent == 0 and report.retried == 1
    assert server.handler.received == [] and server.handler.data_calls == 0
    row = outbox(db, outbox_id)
    assert row["status"] == "pending" and "STARTTLS" in row["last_error"]
    assert "secret" not in row["last_error"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_starttls_and_auth_with_test_certificate(
    tmp_path: Path, db: Any, ca: trustme.CA
) -> None:
    server = SmtpServer(tls_context=_server_context(ca), credentials=("bot", "s3cret"))
    async with server:
        settings = _settings(
            tmp_path, server, smtp={"security": "starttls", "username": "bot", "password": "s3cret"}
        )
        _, outbox_id = _queue(db, settings)
        report = await deliver_due(db, settings, T0, tls_context=_client_context(ca))
    assert report.sent == 1, report.errors
    assert server.handler.logins == [("bot", "s3cret")]
    assert outbox(db, outbox_id)["status"] == "sent"


async def test_starttls_with_an_untrusted_certificate_is_refused(
    tmp_path: Path, db: Any, ca: trustme.CA
) -> None:
    async with SmtpServer(tls_context=_server_context(ca)) as server:
        settings = _settings(tmp_path, server, smtp={"security": "starttls"})
        _, outbox_id = _queue(db, settings)
        # The default context trusts the system CAs only, not the test CA.
        report = await deliver_due(db, settings, T0)
    assert report.sent == 0 and server.handler.received == []
    assert outbox(db, outbox_id)["status"] == "pending"


async def test_implicit_tls(tmp_path: Path, db: Any, ca: trustme.CA) -> None:
    async with SmtpServer(implicit_tls=_server_context(ca)) as server:
        settings = _settings(tmp_path, server, smtp={"security": "tls"})
        _, outbox_id = _queue(db, settings)
        report = await deliver_due(db, settings, T0, tls_context=_client_context(ca))
    assert report.sent == 1, report.errors
    assert outbox(db, outbox_id)["status"] == "sent"


async def test_requeue_and_list(tmp_path: Path, db: Any) -> None:
    handler = Handler(data_replies=["554 5.6.0 bad content", "554 5.6.0 bad content"])
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server)
        _, first = _queue(db, settings)
        _, second = _queue(db, settings)
        await deliver_due(db, settings, T0)
        assert [r["id"] for r in list_outbox(db, "failed")] == [first, second]
        listed = list_outbox(db)[0]
        assert "raw" not in listed and listed["subject"].startswith("[ECCP-")
        assert listed["rcpt_to"] == ["segreteria@example.org"]
        with pytest.raises(OutboxError, match="no outbox message"):
            requeue(db, 999, T0)
        assert requeue(db, first, T0 + LATER) == [first]
        with pytest.raises(OutboxError, match="only failed"):
            requeue(db, first, T0 + LATER)
        assert outbox(db, first)["status"] == "pending"
        assert requeue(db, "all_failed", T0 + LATER) == [second]
        report = await deliver_due(db, settings, T0 + LATER)
    assert report.sent >= 2
    assert outbox(db, first)["status"] == outbox(db, second)["status"] == "sent"
    assert len(audit_events(db, "requeued")) == 2
    assert failed_problems(db) == []


def test_retry_delay_is_capped_exponential_with_jitter() -> None:
    rng = random.Random(1)
    for attempts in range(1, 30):
        delay = retry_delay(attempts, rng)
        nominal = min(RETRY_BASE * 2 ** (attempts - 1), RETRY_CAP)
        assert nominal / 2 <= delay <= nominal
    assert retry_delay(100, rng) <= RETRY_CAP


async def test_mails_deferred_by_an_outage_go_out_once_the_server_is_back(
    tmp_path: Path, db: Any
) -> None:
    port = free_port()
    settings = _settings(tmp_path, smtp={"port": port})
    _, waiting = _queue(db, settings)
    await deliver_due(db, settings, T0)
    assert from_iso(outbox(db, waiting)["next_attempt_at"]) > T0 + timedelta(seconds=1)
    async with SmtpServer(port=port) as server:
        fresh = queue_enquiry_mail(db, settings, insert_enquiry(db), T0)
        report = await deliver_due(db, settings, T0 + timedelta(seconds=1))
        assert report.sent == 1 and report.released == 1
        assert outbox(db, fresh)["status"] == "sent"
        report = await deliver_due(db, settings, T0 + timedelta(seconds=2))
    assert report.sent == 1 and outbox(db, waiting)["status"] == "sent"
    assert len(server.handler.received) == 2


async def test_probe_smtp(tmp_path: Path, ca: trustme.CA) -> None:
    from bot.mail.outbox import probe_smtp

    server = SmtpServer(tls_context=_server_context(ca), credentials=("bot", "s3cret"))
    async with server:
        good = _settings(
            tmp_path, server, smtp={"security": "starttls", "username": "bot", "password": "s3cret"}
        )
        assert await probe_smtp(good, tls_context=_client_context(ca)) == []
        bad = _settings(
            tmp_path, server, smtp={"security": "starttls", "username": "bot", "password": "wrong"}
        )
        [problem] = await probe_smtp(bad, tls_context=_client_context(ca))
    assert problem.startswith("smtp: cannot connect and log in") and "wrong" not in problem
    down = _settings(tmp_path, smtp={"port": free_port()})
    assert len(await probe_smtp(down)) == 1
    assert await probe_smtp(make_settings(tmp_path, smtp={"host": ""})) == []


async def test_garbled_reply_is_temporary(tmp_path: Path, db: Any) -> None:
    handler = Handler(data_replies=["this is not SMTP"])
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server)
        _, outbox_id = _queue(db, settings)
        report = await deliver_due(db, settings, T0)
        assert report.retried == 1 and outbox(db, outbox_id)["status"] == "pending"
        assert "unexpected reply" in outbox(db, outbox_id)["last_error"]
        report = await deliver_due(db, settings, T0 + LATER)
    assert report.sent == 1 and outbox(db, outbox_id)["status"] == "sent"


async def test_crash_after_acceptance_resends_with_the_same_message_id(
    tmp_path: Path, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.mail import outbox as worker

    async with SmtpServer() as server:
        settings = _settings(tmp_path, server)
        _, outbox_id = _queue(db, settings)

        def crash(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("killed before recording")

        monkeypatch.setattr(worker, "_record_sent", crash)
        with pytest.raises(RuntimeError):
            await deliver_due(db, settings, T0)
        assert outbox(db, outbox_id)["status"] == "pending"
        monkeypatch.undo()
        report = await deliver_due(db, settings, T0)
    assert report.sent == 1 and outbox(db, outbox_id)["status"] == "sent"
    ids = [r.message["Message-ID"] for r in server.handler.received]
    assert ids == [outbox(db, outbox_id)["message_id"]] * 2  # at least once, never a new id
