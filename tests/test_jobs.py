"""Reminders, digest and retention with a controllable clock (no scheduler needed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from bot.jobs.digest import (
    DIGEST_LAST_SLOT,
    build_digest,
    digest_slot_due,
    latest_slot,
    run_scheduled_digest,
)
from bot.jobs.reminders import send_reminders
from bot.jobs.retention import (
    SESSION_IDLE_PURGE,
    apply_retention,
    expired_enquiries,
    purge_idle_sessions,
    session_idle_limit,
)
from bot.settings import Settings
from bot.storage import get_meta, open_database, to_iso
from tests.smtp_support import T0, audit_events, insert_enquiry, make_settings, queue_enquiry_mail

H = timedelta(hours=1)


# Every reminder rule holds for one grouped mail per round (the default) and for one mail
# per enquiry alike.
@pytest.fixture(params=[True, False], ids=["grouped", "per-enquiry"])
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return make_settings(
        tmp_path,
        reminders={
            "first_after": "48h",
            "repeat_every": "24h",
            "max_count": 3,
            "grouped": request.param,
        },
        digest={"cron": "0 9 * * mon-fri", "timezone": "Europe/Rome"},
        privacy={"retention": "30d"},
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Any]:
    database = open_database(settings.database_path)
    yield database
    database.close()


def _forwarded(db: Any, settings: Settings, at: datetime = T0, **fields: Any) -> dict[str, Any]:
    enquiry = insert_enquiry(db, now=at, forwarded_at=to_iso(at), **fields)
    queue_enquiry_mail(db, settings, enquiry, at)
    db.execute("UPDATE deliveries SET status = 'sent' WHERE enquiry_id = ?", [enquiry["id"]])
    return enquiry


def _reminders(db: Any) -> list[dict[str, Any]]:
    return list(
        db.query("SELECT * FROM deliveries WHERE kind IN ('reminder', 'reminders') ORDER BY id")
    )


def _plain(message: Any) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _enquiry(db: Any, enquiry_id: int) -> dict[str, Any]:
    return next(iter(db.query("SELECT * FROM enquiries WHERE id = ?", [enquiry_id])))


# ---------------------------------------------------------------- reminders


def test_reminder_count_and_timing_are_exact(db: Any, settings: Settings) -> None:
    enquiry = _forwarded(db, settings)
    original = next(
        iter(
            db.query("SELECT idempotency_key AS message_id FROM deliveries WHERE kind = 'enquiry'")
        )
    )
    schedule = [
        (48 * H - timedelta(seconds=1), 0),
        (48 * H, 1),
        (48 * H, 1),  # the same instant again: nothing new
        (72 * H - timedelta(seconds=1), 1),
        (72 * H, 2),
        (96 * H, 3),
        (120 * H, 3),  # max_count reached
        (1000 * H, 3),
    ]
    for offset, expected in schedule:
        send_reminders(db, settings, T0 + offset)
        assert len(_reminders(db)) == expected, offset
    row = _enquiry(db, enquiry["id"])
    assert row["reminder_count"] == 3
    assert row["last_reminder_at"] == to_iso(T0 + 96 * H)
    events = audit_events(db, "reminded")
    assert [json.loads(e["detail"])["count"] for e in events] == [1, 2, 3]
    for index, reminder in enumerate(_reminders(db), start=1):
        message = message_from_bytes(reminder["payload"], policy=policy.default)
        assert reminder["status"] == "queued"
        if settings.reminders.grouped:
            # One grouped mail per round, naming the reference and this reminder's number.
            assert message["X-Clusterbot-Refs"] == enquiry["ref"]
            assert message["References"] == original["message_id"]
            assert f"{enquiry['ref']} – promemoria {index} di 3" in _plain(message)
            continue
        assert message["In-Reply-To"] == original["message_id"]
        assert message["References"] == original["message_id"]
        assert str(message["Subject"]).startswith(f"[{enquiry['ref']}] ")
        assert f" {index}" in str(message["Subject"])
        assert reminder["enquiry_id"] == enquiry["id"] and reminder["status"] == "queued"


def test_no_reminder_before_forwarding(db: Any, settings: Settings) -> None:
    insert_enquiry(db)  # never forwarded (mail not delivered yet)
    assert send_reminders(db, settings, T0 + 1000 * H) == []


@pytest.mark.parametrize("status", ["answered", "closed"])
def test_reminders_stop_when_answered_or_closed(db: Any, settings: Settings, status: str) -> None:
    enquiry = _forwarded(db, settings)
    assert send_reminders(db, settings, T0 + 48 * H) == [enquiry["ref"]]
    db.execute("UPDATE enquiries SET status = ? WHERE id = ?", [status, enquiry["id"]])
    for hours in (72, 96, 500):
        assert send_reminders(db, settings, T0 + hours * H) == []
    assert len(_reminders(db)) == 1


def test_restart_across_due_time_sends_once(settings: Settings) -> None:
    db = open_database(settings.database_path)
    enquiry = _forwarded(db, settings)
    assert send_reminders(db, settings, T0 + 47 * H) == []
    db.close()  # the bot stops before the due time...
    for _ in range(3):  # ...and restarts (several times) after it
        db = open_database(settings.database_path)
        send_reminders(db, settings, T0 + 50 * H)
        db.close()
    db = open_database(settings.database_path)
    assert len(_reminders(db)) == 1
    assert _enquiry(db, enquiry["id"])["reminder_count"] == 1
    db.close()


def test_clock_jumps_never_duplicate(db: Any, settings: Settings) -> None:
    _forwarded(db, settings)
    # Ten days of downtime (or a forward jump): one reminder now, not a burst.
    assert len(send_reminders(db, settings, T0 + 240 * H)) == 1
    assert send_reminders(db, settings, T0 + 240 * H + timedelta(minutes=1)) == []
    # The clock jumps back: nothing is due until a full interval after the last reminder.
    assert send_reminders(db, settings, T0 + 60 * H) == []
    assert send_reminders(db, settings, T0 + 263 * H) == []
    assert len(send_reminders(db, settings, T0 + 264 * H)) == 1
    assert len(_reminders(db)) == 2


def test_a_crash_inside_the_reminder_transaction_writes_nothing(
    db: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    enquiry = _forwarded(db, settings)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr("bot.jobs.reminders.record_audit", crash)
    with pytest.raises(RuntimeError):
        send_reminders(db, settings, T0 + 48 * H)
    assert _reminders(db) == []
    assert _enquiry(db, enquiry["id"])["reminder_count"] == 0
    monkeypatch.undo()
    assert len(send_reminders(db, settings, T0 + 48 * H)) == 1


def test_max_count_zero_disables_reminders(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, reminders={"max_count": 0})
    db = open_database(settings.database_path)
    _forwarded(db, settings)
    assert send_reminders(db, settings, T0 + 1000 * H) == []
    db.close()


# ---------------------------------------------------------------- digest

# Monday 2 March 2026, 09:00 in Rome is 08:00 UTC.
MONDAY_9 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_latest_slot_follows_cron_in_its_timezone(settings: Settings) -> None:
    assert latest_slot(settings, MONDAY_9) == MONDAY_9
    assert latest_slot(settings, MONDAY_9 + 3 * H) == MONDAY_9
    # Just before 09:00 Rome on Monday the previous slot (Friday) is too old to catch up.
    assert latest_slot(settings, MONDAY_9 - timedelta(minutes=1)) is None
    # Sunday: no slot.
    assert latest_slot(settings, MONDAY_9 - 24 * H) is None
    assert digest_slot_due(settings, MONDAY_9 + H, MONDAY_9) is None
    assert digest_slot_due(settings, MONDAY_9 + H, MONDAY_9 - 72 * H) == MONDAY_9


def test_digest_content(db: Any, settings: Settings) -> None:
    old = insert_enquiry(db, now=MONDAY_9 - 100 * H, organisation="Oldest & <Co>", reminder_count=2)
    new = insert_enquiry(db, now=MONDAY_9 - 5 * H, organisation="Newer")
    # Answered in 10 h and 30 h: median 20 h.
    insert_enquiry(
        db,
        now=MONDAY_9 - 40 * H,
        status="answered",
        answered_at=to_iso(MONDAY_9 - 30 * H),
    )
    insert_enquiry(
        db,
        now=MONDAY_9 - 40 * H,
        status="closed",
        answered_at=to_iso(MONDAY_9 - 10 * H),
        closed_at=to_iso(MONDAY_9 - 9 * H),
    )
    digest = build_digest(db, settings, MONDAY_9)
    assert [item.ref for item in digest.open] == [old["ref"], new["ref"]]
    assert digest.open[0].age == 100 * H and digest.open[0].reminder_count == 2
    assert digest.answered_count == 2 and digest.closed_count == 1
    assert digest.median_answer == 20 * H

    result = run_scheduled_digest(db, settings, MONDAY_9)
    assert result is not None and result.delivery_id is not None
    row = next(iter(db.query("SELECT * FROM deliveries WHERE kind = 'digest'")))
    message = message_from_bytes(row["payload"], policy=policy.default)
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert plain.index(old["ref"]) < plain.index(new["ref"])
    assert "Oldest & <Co>" in plain and "Oldest &amp; &lt;Co&gt;" in html
    assert "20 h 0 min" in plain

    # The same slot is served once, even across a restart or a second call.
    assert run_scheduled_digest(db, settings, MONDAY_9 + H) is None
    # The next digest counts only what happened since this one.
    nxt = build_digest(db, settings, MONDAY_9 + 24 * H)
    assert nxt.since == MONDAY_9 and nxt.answered_count == 0 and nxt.closed_count == 0
    assert nxt.median_answer is None and len(nxt.open) == 2


def test_digest_with_nothing_to_report_sends_nothing(db: Any, settings: Settings) -> None:
    result = run_scheduled_digest(db, settings, MONDAY_9)
    assert result is not None and result.digest.is_empty and result.delivery_id is None
    assert list(db.query("SELECT * FROM deliveries")) == []
    assert run_scheduled_digest(db, settings, MONDAY_9 + H) is None


def test_missed_digest_is_caught_up_once(db: Any, settings: Settings) -> None:
    insert_enquiry(db, now=MONDAY_9 - 10 * H)
    # The bot was down at 09:00 and starts at 11:30.
    assert run_scheduled_digest(db, settings, MONDAY_9 + 2.5 * H) is not None
    assert run_scheduled_digest(db, settings, MONDAY_9 + 3 * H) is None
    assert len(list(db.query("SELECT * FROM deliveries WHERE kind = 'digest'"))) == 1


# ---------------------------------------------------------------- retention


def test_retention_erases_only_what_is_due(db: Any, settings: Settings) -> None:
    now = T0 + 100 * 24 * H
    due = _forwarded(
        db,
        settings,
        status="closed",
        closed_at=to_iso(now - 31 * 24 * H),
        answer="Sì",
    )
    recent = insert_enquiry(db, status="closed", closed_at=to_iso(now - 29 * 24 * H))
    answered = insert_enquiry(db, status="answered", answered_at=to_iso(now - 29 * 24 * H))
    answered_long_ago = insert_enquiry(db, status="answered", answered_at=to_iso(now - 90 * 24 * H))
    still_open = insert_enquiry(db, created_at=to_iso(now - 99 * 24 * H))
    # Answered and never closed is finished too: its data must not be kept for ever.
    assert expired_enquiries(db, settings, now) == [due["id"], answered_long_ago["id"]]

    assert apply_retention(db, settings, now) == 2
    assert _enquiry(db, answered_long_ago["id"])["name"] is None
    erased = _enquiry(db, due["id"])
    for column in ("name", "email", "organisation", "question", "username", "chat_id", "answer"):
        assert erased[column] is None, column
    assert erased["erased_at"] == to_iso(now)
    assert erased["ref"] == due["ref"] and erased["status"] == "closed"
    raws = list(db.query("SELECT payload AS raw FROM deliveries WHERE enquiry_id = ?", [due["id"]]))
    assert all(r["raw"] is None for r in raws)
    for keep in (recent, answered, still_open):
        assert _enquiry(db, keep["id"])["name"] == "Maria Rossi"
        assert _enquiry(db, keep["id"])["erased_at"] is None
    event, _ = audit_events(db, "erased")
    assert event["enquiry_id"] == due["id"] and event["actor"] == "system"
    assert "Maria" not in (event["detail"] or "") and "maria" not in (event["detail"] or "")
    # Idempotent.
    assert apply_retention(db, settings, now + H) == 0
    assert len(audit_events(db, "erased")) == 2


def test_first_start_catch_up_records_the_slot_without_mail(db: Any, settings: Settings) -> None:
    insert_enquiry(db, now=MONDAY_9 - 10 * H)
    # A bot that never ran before has no missed digest: the slot is only recorded.
    assert run_scheduled_digest(db, settings, MONDAY_9 + H, catch_up=True) is None
    assert get_meta(db, DIGEST_LAST_SLOT) == to_iso(MONDAY_9)
    assert list(db.query("SELECT * FROM deliveries WHERE kind = 'digest'")) == []
    # The next slot (Tuesday 09:00) is served normally.
    assert run_scheduled_digest(db, settings, MONDAY_9 + 24 * H) is not None
    # A later restart catches up a missed slot (Wednesday) once.
    result = run_scheduled_digest(db, settings, MONDAY_9 + 50 * H, catch_up=True)
    assert result is not None and result.delivery_id is not None


# ---------------------------------------------------------------- idle sessions


def _session(db: Any, user_id: str, updated_at: datetime) -> None:
    # What the engine keeps before consent: a half-filled form and the last FAQ questions.
    state = {"draft": {"name": "Maria Rossi", "email": "maria@example.org"}, "faq": ["Chi?"]}
    db.execute(
        "INSERT INTO sessions (channel, user_id, lang, state, updated_at) VALUES (?, ?, ?, ?, ?)",
        ["telegram", user_id, "it", json.dumps(state), to_iso(updated_at)],
    )


def _session_users(db: Any) -> list[str]:
    return [row["user_id"] for row in db.query("SELECT user_id FROM sessions ORDER BY user_id")]


def test_retention_deletes_idle_sessions(db: Any, settings: Settings) -> None:
    now = T0 + 100 * 24 * H
    _session(db, "1-walked-away", now - SESSION_IDLE_PURGE - H)
    _session(db, "2-recent", now - SESSION_IDLE_PURGE + H)
    _session(db, "3-active", now - H)
    assert apply_retention(db, settings, now) == 0  # no enquiry was due
    assert _session_users(db) == ["2-recent", "3-active"]
    [event] = audit_events(db, "erased")
    assert event["enquiry_id"] is None and event["actor"] == "system"
    assert json.loads(event["detail"]) == {"scope": "sessions", "idle": 1}
    assert "1-walked-away" not in event["detail"] and "Maria" not in event["detail"]
    # Idempotent, and nothing audited when nothing was deleted.
    assert purge_idle_sessions(db, settings, now) == 0
    assert len(audit_events(db, "erased")) == 1
    # The rest go once idle long enough.
    assert purge_idle_sessions(db, settings, now + SESSION_IDLE_PURGE) == 2
    assert _session_users(db) == []


def test_a_shorter_retention_also_shortens_the_session_idle_limit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, privacy={"retention": "7d"})
    assert session_idle_limit(settings) == timedelta(days=7)
    assert session_idle_limit(make_settings(tmp_path)) == SESSION_IDLE_PURGE
    database = open_database(settings.database_path)
    try:
        _session(database, "old", T0 - timedelta(days=8))
        _session(database, "new", T0 - timedelta(days=6))
        assert purge_idle_sessions(database, settings, T0) == 1
        assert _session_users(database) == ["new"]
    finally:
        database.close()
