"""`clusterbot outbox` and `clusterbot digest` end to end, with a real aiosmtpd server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.settings.load import load_settings
from bot.storage import open_database, utc_now
from tests.smtp_support import (
    SmtpServer,
    audit_events,
    free_port,
    insert_enquiry,
    queue_enquiry_mail,
)


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    # On a loop in another thread: the commands run their own loop with asyncio.run().
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    smtp = asyncio.run_coroutine_threadsafe(SmtpServer().start(), loop).result(10)
    yield smtp
    asyncio.run_coroutine_threadsafe(smtp.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _config(tmp_path: Path, smtp_host: str = "", port: int = 25) -> str:
    path = tmp_path / "clusterbot.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "var"}"\n'
        f'[smtp]\nhost = "{smtp_host}"\nport = {port}\nsecurity = "none"\ntimeout = "5s"\n',
        encoding="utf-8",
    )
    return str(path)


def _failed_row(config: str) -> tuple[Any, int]:
    settings = load_settings(config)
    db = open_database(settings.database_path)
    enquiry = insert_enquiry(db)
    outbox_id = queue_enquiry_mail(db, settings, enquiry, utc_now())
    db.execute(
        "UPDATE deliveries SET status = 'dead', attempts = 1, last_error = ? WHERE id = ?",
        ["550 5.7.1 rejected\x1b[31m", outbox_id],
    )
    return db, outbox_id


def test_outbox_list_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    open_database(load_settings(config).database_path).close()
    assert main(["outbox", "list", "--config", config]) == 0
    assert "no deliveries" in capsys.readouterr().out
    db, outbox_id = _failed_row(config)
    db.close()
    assert main(["outbox", "--config", config, "list", "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert "dead" in out and "550 5.7.1 rejected" in out and "ECCP-0001" in out
    assert "\x1b" not in out
    assert main(["outbox", "list", "--json", "--config", config]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["id"] == outbox_id and row["status"] == "dead" and "payload" not in row
    assert row["subject"].startswith("[ECCP-0001]")


def test_outbox_retry_requeues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    db, outbox_id = _failed_row(config)
    assert main(["outbox", "retry", str(outbox_id), "--config", config]) == 0
    assert f"re-queued 1 delivery: {outbox_id}" in capsys.readouterr().out
    row = next(iter(db.query("SELECT * FROM deliveries WHERE id = ?", [outbox_id])))
    assert row["status"] == "queued" and row["attempts"] == 0
    [event] = audit_events(db, "requeued")
    assert event["actor"] == "cli"
    db.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["outbox", "retry", "99"], "no delivery with id 99"),
        (["deliveries", "retry", "1"], "only dead (failed) deliveries can be retried"),
    ],
)
def test_outbox_retry_user_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    config = _config(tmp_path)
    db, outbox_id = _failed_row(config)
    db.execute("UPDATE deliveries SET status = 'sent' WHERE id = ?", [outbox_id])
    db.close()
    assert main([*argv, "--config", config]) == 1
    err = capsys.readouterr().err
    assert err.startswith("clusterbot: error: ") and message in err
    assert "Traceback" not in err


def test_outbox_retry_needs_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["outbox", "retry"])
    assert exc.value.code == 2


def test_outbox_retry_all_failed_and_send(
    tmp_path: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, "127.0.0.1", server.port)
    db, _ = _failed_row(config)
    message_id = next(iter(db.query("SELECT idempotency_key FROM deliveries")))["idempotency_key"]
    db.close()
    assert main(["outbox", "retry", "--all-failed", "--send", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "re-queued 1 delivery: " in out and "sent 1 delivery;" in out
    assert "(s)" not in out
    [received] = server.handler.received
    assert received.message["Message-ID"] == message_id


def test_outbox_retry_counts_in_the_plural(
    tmp_path: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, "127.0.0.1", server.port)
    db, first = _failed_row(config)
    db.close()
    db, second = _failed_row(config)
    db.close()
    assert main(["outbox", "retry", "--all-failed", "--send", "--config", config]) == 0
    out = capsys.readouterr().out
    assert f"re-queued 2 deliveries: {first}, {second}" in out
    assert "sent 2 deliveries; 0 to retry later; 0 refused" in out


def test_digest_print_and_send_to_embedded_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    open_database(load_settings(config).database_path).close()
    assert main(["digest", "--config", config]) == 0
    assert "nothing to report" in capsys.readouterr().out
    assert main(["digest", "--send", "--config", config]) == 0
    assert "no digest sent" in capsys.readouterr().out

    settings = load_settings(config)
    db = open_database(settings.database_path)
    enquiry = insert_enquiry(db, organisation="Digest <Org>")
    db.close()
    assert main(["digest", "--config", config]) == 0
    out = capsys.readouterr().out
    assert enquiry["ref"] in out and "Digest <Org>" in out and "Subject:" in out
    assert not list(settings.mail_dir.glob("*.eml"))  # printing sends nothing

    assert main(["digest", "--send", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "digest sent" in out and "1 open enquiry, 0 answered, 0 closed" in out
    [path] = settings.mail_dir.glob("*.eml")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert enquiry["ref"] in message.get_body(("plain",)).get_content()


def test_digest_send_reports_an_unreachable_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, "127.0.0.1", free_port())
    settings = load_settings(config)
    db = open_database(settings.database_path)
    insert_enquiry(db)
    db.close()
    assert main(["digest", "--send", "--config", config]) == 1
    err = capsys.readouterr().err
    assert "not delivered yet" in err and "Traceback" not in err
