"""The outbox worker against a real aiosmtpd server: success, faults, TLS, operator tools."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from bot.deliveries.smtp import SmtpTarget, probe_smtp
from bot.deliveries.store import DeliveryError, enqueue, list_deliveries, requeue
from bot.deliveries.store import problems as failed_problems
from bot.deliveries.worker import RETRY_BASE, RETRY_CAP, retry_delay
from bot.mail.compose import enquiry_mail, mail_delivery
from bot.settings import Settings
from bot.storage import from_iso, open_database, to_iso
from tests.smtp_support import (
    CHAT_DELIVERIES,
    T0,
    Handler,
    SmtpServer,
    audit_events,
    deliver_due,
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
    assert outbox(db, outbox_id)["status"] == "queued"


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
    assert row["status"] == "failed-temporary" and row["attempts"] == 1
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
            assert row["status"] == "failed-temporary" and row["attempts"] == attempt
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
        assert row["status"] == "dead"
        assert "550" in row["last_error"] and "spam" in row["last_error"]
        # No more attempts, whatever the time.
        again = await deliver_due(db, settings, T0 + LATER)
    assert outbox(db, outbox_id)["status"] == "dead"
    [audit] = audit_events(db, "mail_failed")
    assert audit["ref"] == enquiry["ref"]
    assert json.loads(audit["detail"])["code"] == "550 5.7.1"
    assert "Maria" not in audit["detail"]
    [note] = db.query(f"SELECT * FROM {CHAT_DELIVERIES}")
    assert note["kind"] == "mail_failed" and note["chat_id"] == "-1001"
    assert enquiry["ref"] in note["text"] and f"outbox retry {outbox_id}" in note["text"]
    # A message-level refusal also mails a notice to the secretariat (sent by the 2nd run).
    # Queued by the hook during the run, and sent by the same run.
    notices = list(db.query("SELECT * FROM deliveries WHERE kind = 'failure'"))
    assert len(notices) == 1 and notices[0]["status"] == "sent" and again.sent == 0
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
    assert outbox(db, outbox_id)["status"] == "dead"
    assert "no such user" in outbox(db, outbox_id)["last_error"]
    assert list(db.query(f"SELECT * FROM {CHAT_DELIVERIES}")) == []
    # The recipient itself is refused: a notice to it would fail too, so none is queued.
    assert list(db.query("SELECT * FROM deliveries WHERE kind = 'failure'")) == []


async def test_disconnect_during_data_retries_same_message(tmp_path: Path, db: Any) -> None:
    handler = Handler(drop_in_data=1)
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server)
        _, first = _queue(db, settings)
        _, second = _queue(db, settings)
        report = await deliver_due(db, settings, T0)
        # The first mail's fate is unknown: retried later. The second goes over a new connection.
        assert report.retried == 1 and report.sent == 1
        assert outbox(db, first)["status"] == "failed-temporary"
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
        outbox_id = enqueue(db, mail_delivery(message, "enquiry", enquiry["id"]), T0)
        report = await deliver_due(db, settings, T0)
    assert report.sent == 1 and report.partial == 1
    row = outbox(db, outbox_id)
    assert row["status"] == "sent"
    assert "gone@example.org" in row["last_error"] and "550" in row["last_error"]
    assert handler.received[0].rcpt_tos == ["segreteria@example.org"]
    [audit] = audit_events(db, "mail_failed")
    assert json.loads(audit["detail"])["partial"] is True
    [note] = db.query(f"SELECT * FROM {CHAT_DELIVERIES}")
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
    assert row["status"] == "failed-temporary" and "STARTTLS" in row["last_error"]
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
    assert outbox(db, outbox_id)["status"] == "failed-temporary"


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
        assert [r.id for r in list_deliveries(db, "failed")] == [first, second]
        assert [r.id for r in list_deliveries(db, "dead")] == [first, second]
        with pytest.raises(DeliveryError, match="no delivery with id"):
            requeue(db, 999, T0)
        assert requeue(db, first, T0 + LATER) == [first]
        with pytest.raises(DeliveryError, match="only dead"):
            requeue(db, first, T0 + LATER)
        assert outbox(db, first)["status"] == "queued"
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
        # The fresh mail reaches the server; the one waiting for it is due at once, and the
        # same run (which looks again) sends it.
        assert report.sent == 2 and report.released == 1
        assert outbox(db, fresh)["status"] == "sent"
    assert outbox(db, waiting)["status"] == "sent"
    assert len(server.handler.received) == 2


async def test_probe_smtp(tmp_path: Path, ca: trustme.CA) -> None:

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
        assert report.retried == 1 and outbox(db, outbox_id)["status"] == "failed-temporary"
        assert "unexpected reply" in outbox(db, outbox_id)["last_error"]
        report = await deliver_due(db, settings, T0 + LATER)
    assert report.sent == 1 and outbox(db, outbox_id)["status"] == "sent"


async def test_crash_after_acceptance_resends_with_the_same_message_id(
    tmp_path: Path, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.deliveries import worker

    async with SmtpServer() as server:
        settings = _settings(tmp_path, server)
        _, outbox_id = _queue(db, settings)

        def crash(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("killed before recording")

        monkeypatch.setattr(worker.store, "record_sent", crash)
        with pytest.raises(RuntimeError):
            await deliver_due(db, settings, T0)
        assert outbox(db, outbox_id)["status"] == "sending"
        monkeypatch.undo()
        report = await deliver_due(db, settings, T0)
    assert report.sent == 1 and outbox(db, outbox_id)["status"] == "sent"
    ids = [r.message["Message-ID"] for r in server.handler.received]
    assert ids == [outbox(db, outbox_id)["message_id"]] * 2  # at least once, never a new id


# ---------------------------------------------------------------- rows gone meanwhile


async def _until(condition: Any, what: str, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _enquiry_row(db: Any, enquiry_id: int) -> dict[str, Any]:
    return next(iter(db.query("SELECT * FROM enquiries WHERE id = ?", [enquiry_id])))


async def test_mail_of_an_enquiry_erased_meanwhile_is_not_sent(tmp_path: Path, db: Any) -> None:
    from bot.enquiries import forget_user

    # The first mail stalls in DATA; meanwhile the second one's applicant sends /forget.
    handler = Handler(hang=asyncio.Event())
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server)
        kept, kept_id = _queue(db, settings, user_id="1001")
        erased, erased_id = _queue(db, settings, user_id="2002", email="other@example.org")
        task = asyncio.create_task(deliver_due(db, settings, T0))
        await _until(lambda: handler.data_calls == 1, "the first DATA")
        assert forget_user(db, "telegram", "2002", now=T0) == 1
        handler.hang.set()
        report = await task
    [received] = handler.received
    assert received.message["Message-ID"] == outbox(db, kept_id)["message_id"]
    assert (report.sent, report.skipped) == (1, 1)
    assert outbox(db, erased_id)["status"] == "cancelled" and outbox(db, erased_id)["raw"] is None
    row = _enquiry_row(db, erased["id"])
    assert row["erased_at"] is not None and row["forwarded_at"] is None
    assert [e["enquiry_id"] for e in audit_events(db, "forwarded")] == [kept["id"]]


async def test_enquiry_erased_while_its_mail_is_in_flight_gets_no_bookkeeping(
    tmp_path: Path, db: Any
) -> None:
    from bot.enquiries import forget_user

    handler = Handler(hang=asyncio.Event())
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server)
        enquiry, outbox_id = _queue(db, settings)
        task = asyncio.create_task(deliver_due(db, settings, T0))
        await _until(lambda: handler.data_calls == 1, "DATA")
        forget_user(db, "telegram", "1001", now=T0)
        handler.hang.set()
        report = await task
    # The server had the mail already (nothing can call it back), but nothing is recorded
    # on the erased enquiry: no forwarded_at, no 'forwarded' audit.
    assert report.sent == 1 and len(handler.received) == 1
    row = _enquiry_row(db, enquiry["id"])
    assert row["erased_at"] is not None and row["forwarded_at"] is None
    assert audit_events(db, "forwarded") == []
    assert outbox(db, outbox_id)["status"] == "cancelled" and outbox(db, outbox_id)["raw"] is None


async def test_erased_enquiry_row_left_pending_is_dropped_not_sent(tmp_path: Path, db: Any) -> None:
    async with SmtpServer() as server:
        settings = _settings(tmp_path, server)
        enquiry, outbox_id = _queue(db, settings)
        # As if erased by a process that left the row behind: it must still not go out.
        db.execute("UPDATE enquiries SET erased_at = ? WHERE id = ?", [to_iso(T0), enquiry["id"]])
        report = await deliver_due(db, settings, T0)
    assert server.handler.received == []
    assert (report.sent, report.skipped) == (0, 1)
    assert outbox(db, outbox_id)["status"] == "cancelled" and outbox(db, outbox_id)["raw"] is None
    assert _enquiry_row(db, enquiry["id"])["forwarded_at"] is None
    assert audit_events(db, "forwarded") == []


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "per-enquiry"])
@pytest.mark.parametrize("outcome", ["answered", "marked answered", "closed"])
async def test_queued_reminder_is_withdrawn_once_the_enquiry_is_answered(
    tmp_path: Path, db: Any, outcome: str, grouped: bool
) -> None:
    from bot.enquiries import answer_enquiry, close_enquiry, mark_answered
    from bot.jobs.reminders import send_reminders

    settings = make_settings(
        tmp_path,
        reminders={"first_after": "48h", "repeat_every": "24h", "max_count": 3, "grouped": grouped},
    )
    enquiry = insert_enquiry(db, forwarded_at=to_iso(T0))
    queue_enquiry_mail(db, settings, enquiry, T0)
    db.execute("UPDATE deliveries SET status = 'sent' WHERE enquiry_id = ?", [enquiry["id"]])
    due = T0 + timedelta(hours=48)
    assert send_reminders(db, settings, due) == [enquiry["ref"]]
    kind = "reminders" if grouped else "reminder"
    [reminder] = db.query("SELECT * FROM deliveries WHERE kind = ?", [kind])
    # The SMTP server was down when the reminder was queued; the secretariat answers.
    if outcome == "answered":
        answer_enquiry(db, enquiry["ref"], "Yes, you can.", actor="cli", now=due)
    elif outcome == "marked answered":
        mark_answered(db, enquiry["ref"], actor="cli", now=due)
    else:
        close_enquiry(db, enquiry["ref"], actor="cli", now=due)
    audits = len(audit_events(db))
    async with SmtpServer() as server:
        report = await deliver_due(db, settings, due, target=_target(server))
    assert server.handler.received == []
    assert (report.sent, report.skipped) == (0, 1)
    assert (
        outbox(db, reminder["id"])["status"] == "cancelled"
        and outbox(db, reminder["id"])["raw"] is None
    )
    assert len(audit_events(db)) == audits  # nothing audited


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "per-enquiry"])
async def test_reminder_for_an_open_enquiry_still_goes_out(
    tmp_path: Path, db: Any, grouped: bool
) -> None:
    from bot.jobs.reminders import send_reminders

    settings = make_settings(
        tmp_path, reminders={"first_after": "48h", "max_count": 1, "grouped": grouped}
    )
    enquiry = insert_enquiry(db, forwarded_at=to_iso(T0))
    queue_enquiry_mail(db, settings, enquiry, T0)
    db.execute("UPDATE deliveries SET status = 'sent' WHERE enquiry_id = ?", [enquiry["id"]])
    send_reminders(db, settings, T0 + timedelta(hours=48))
    async with SmtpServer() as server:
        report = await deliver_due(db, settings, T0 + timedelta(hours=48), target=_target(server))
    assert (report.sent, report.skipped) == (1, 0)
    kind = "reminders" if grouped else "reminder"
    assert server.handler.received[0].message["X-Clusterbot-Kind"] == kind


def _target(server: SmtpServer) -> Any:

    return SmtpTarget("127.0.0.1", server.port, "none", timeout=5.0, local_hostname="localhost")


# ---------------------------------------------------------------- recording accepted mail


def _status_elsewhere(path: Path, outbox_id: int) -> str:
    """The row's committed status, read over a connection of its own (as after a kill)."""
    other = open_database(path)
    try:
        return str(outbox(other, outbox_id)["status"])
    finally:
        other.close()


async def test_accepted_mail_is_recorded_while_the_next_send_stalls(
    tmp_path: Path, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.deliveries import recorder

    monkeypatch.setattr(recorder, "FLUSH_SECONDS", 0.2)
    handler = Handler(hang=asyncio.Event(), hang_from=2)
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server)
        _, first = _queue(db, settings)
        _, second = _queue(db, settings)
        task = asyncio.create_task(deliver_due(db, settings, T0))
        await _until(lambda: handler.data_calls == 2, "the second DATA")
        # The second mail stalls (up to smtp.timeout); the first is recorded meanwhile, so a
        # kill now would not send it twice.
        await _until(
            lambda: _status_elsewhere(tmp_path / "db.sqlite3", first) == "sent",
            "the first mail to be recorded",
            within=2.0,
        )
        assert _status_elsewhere(tmp_path / "db.sqlite3", second) == "sending"
        handler.hang.set()
        report = await task
    assert report.sent == 2
    assert outbox(db, first)["status"] == outbox(db, second)["status"] == "sent"


async def test_accepted_mails_are_recorded_in_groups_of_flush_rows(
    tmp_path: Path, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.deliveries import recorder

    monkeypatch.setattr(recorder, "FLUSH_ROWS", 2)
    monkeypatch.setattr(recorder, "FLUSH_SECONDS", 60.0)
    handler = Handler(hang=asyncio.Event(), hang_from=4)
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server)
        ids = [_queue(db, settings)[1] for _ in range(4)]
        task = asyncio.create_task(deliver_due(db, settings, T0))
        await _until(lambda: handler.data_calls == 4, "the fourth DATA")
        path = tmp_path / "db.sqlite3"
        await _until(
            lambda: [_status_elsewhere(path, i) for i in ids[:2]] == ["sent", "sent"],
            "the first group to be recorded",
            within=2.0,
        )
        # The third waits for its group (or FLUSH_SECONDS), the fourth is in flight.
        assert [_status_elsewhere(path, i) for i in ids[2:]] == ["sending", "sending"]
        handler.hang.set()
        report = await task
    assert report.sent == 4
    assert [outbox(db, i)["status"] for i in ids] == ["sent"] * 4
    assert len(audit_events(db, "forwarded")) == 4


async def test_accepted_mail_is_recorded_before_reconnecting(
    tmp_path: Path, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:

    from bot.deliveries import smtp

    real_connect = smtp.connect
    seen: list[str] = []

    async def spying_connect(target: Any) -> Any:
        seen.append(_status_elsewhere(tmp_path / "db.sqlite3", first))
        return await real_connect(target)

    monkeypatch.setattr(smtp, "connect", spying_connect)
    # The second mail loses the connection in DATA: the third needs a new one.
    handler = Handler()
    async with SmtpServer(handler) as server:
        settings = _settings(tmp_path, server)
        _, first = _queue(db, settings)
        _queue(db, settings)
        _queue(db, settings)

        original = handler.handle_DATA

        async def drop_second(server_: Any, session: Any, envelope: Any) -> str:
            if handler.data_calls == 1:
                handler.drop_in_data = 1
            return await original(server_, session, envelope)

        monkeypatch.setattr(handler, "handle_DATA", drop_second)
        report = await deliver_due(db, settings, T0)
    assert (report.sent, report.retried) == (2, 1)
    # First connect: nothing sent yet. Reconnect: the first mail was already recorded.
    assert seen == ["sending", "sent"]


# ---------------------------------------------------------------- describe_smtp


def test_describe_smtp(tmp_path: Path) -> None:
    from bot.deliveries.smtp import describe_smtp

    embedded = make_settings(tmp_path, smtp={"host": ""})
    line = describe_smtp(embedded)
    assert line.startswith("SMTP: embedded mail store") and "mail" in line
    assert str(embedded.mail_dir.name) in line
    assert describe_smtp(embedded, []) == line
    remote = make_settings(
        tmp_path, smtp={"host": "smtp.example.org", "port": 587, "security": "starttls"}
    )
    assert describe_smtp(remote, []) == (
        "SMTP: connection to smtp.example.org:587 (security starttls) OK"
    )
    login = make_settings(tmp_path, smtp={"host": "smtp.example.org", "username": "bot"})
    assert describe_smtp(login, []).startswith("SMTP: login to smtp.example.org:")
    assert describe_smtp(login, []).endswith(" OK")
    assert describe_smtp(login, ["smtp: cannot connect"]).endswith(" FAILED")
    assert "not probed" in describe_smtp(login)
    assert "password" not in describe_smtp(login)
