"""Ready to deploy (issue 13): paths, privacy, loud failures, check, logs, backup, the unit."""

from __future__ import annotations

import asyncio
import configparser
import logging
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from telegram_standin import BotApiStandIn

from bot.cli import main
from bot.enquiries import forget_user, submit_enquiry
from bot.logs import CollapsingHandler, network_cause
from bot.settings.load import load_settings, settings_from_mapping
from bot.settings.run_problems import run_problems
from bot.storage import DatabaseFileLost, StorageError, open_database
from tests.dialogue_support import START

ROOT = Path(__file__).resolve().parent.parent
CLUSTERBOT = Path(sys.executable).parent / "clusterbot"
DRAFT = {
    "name": "Maria Rossi",
    "email": "maria@example.org",
    "organisation": "Cluster Lombardia",
    "country": "Italy",
    "question": "Can a cluster from Norway apply?",
}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def submit(db: Any, settings: Any, user: str = "u1", minutes: int = 0) -> dict[str, Any]:
    return submit_enquiry(
        db,
        settings,
        DRAFT,
        channel="console",
        user_id=user,
        chat_id=user,
        username=None,
        lang="en",
        faq_history=[],
        now=START + timedelta(minutes=minutes),
    )


@pytest.fixture
def api() -> Iterator[BotApiStandIn]:
    with BotApiStandIn() as standin:
        yield standin


# -- 1. paths anchored to the settings file ----------------------------------------------


def test_relative_paths_are_read_from_the_settings_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "kb").mkdir(parents=True)
    config = site / "clusterbot.toml"
    config.write_text('data_dir = "var"\nknowledge_dir = "kb"\n', "utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(Path("..") / "site" / "clusterbot.toml", {})
    assert settings.data_dir == site / "var"
    assert settings.database_path == site / "var" / "clusterbot.sqlite3"
    assert settings.knowledge_dir == site / "kb"
    # Absolute paths stay as written.
    config.write_text(f'data_dir = "{tmp_path / "abs"}"\n', "utf-8")
    assert load_settings(config, {}).data_dir == tmp_path / "abs"


def test_read_only_commands_never_create_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The trap: run from another folder, `enquiries list` made an empty database."""
    site = tmp_path / "site"
    site.mkdir()
    config = site / "clusterbot.toml"
    config.write_text('data_dir = "var"\n', "utf-8")
    settings = load_settings(config, {})
    db = open_database(settings.database_path)
    submit(db, settings)
    db.close()
    monkeypatch.chdir(tmp_path)
    # With the settings file: the bot's database, from any folder.
    assert main(["enquiries", "list", "--config", str(config)]) == 0
    assert "ECCP-0001" in capsys.readouterr().out
    # Without it: a clear line naming the path, and nothing created.
    for argv in (
        ["enquiries", "list"],
        ["enquiries", "show", "ECCP-0001"],
        ["enquiries", "export", "--format", "csv"],
        ["deliveries", "list"],
        ["digest"],
        ["health"],
    ):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        # Absolute: the operator sees which folder was meant.
        assert f"no database at {Path.cwd() / 'var' / 'clusterbot.sqlite3'}" in err, (argv, err)
        assert "--config" in err
    assert main(["check"]) in (0, 1)
    assert not (tmp_path / "var").exists()


def test_check_prints_where_everything_lives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('data_dir = "data"\n', "utf-8")
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"database: {tmp_path / 'data' / 'clusterbot.sqlite3'} (not created yet" in out
    assert f"mail store: {tmp_path / 'data' / 'mail'}" in out
    assert f"settings: {config}" in out
    assert out.splitlines()[-1].startswith("OK")
    assert not (tmp_path / "data").exists()


# -- 2. private by default -----------------------------------------------------------------


def test_app_makes_the_data_private_and_check_reports_looser_modes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.app import App

    data = tmp_path / "data"
    (data / "mail").mkdir(parents=True)
    config = tmp_path / "c.toml"
    config.write_text('data_dir = "data"\n[smtp]\nhost = "embedded"\n', "utf-8")
    settings = load_settings(config, {})
    db = open_database(settings.database_path)
    submit(db, settings)
    db.close()
    old_mail = data / "mail" / "old.eml"
    old_mail.write_text("Subject: x\n\nhello\n")
    os.chmod(data, 0o755)
    os.chmod(data / "mail", 0o755)
    for path in (settings.database_path, old_mail):
        os.chmod(path, 0o644)
    assert main(["check", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{data}: mode 0755 lets other users read personal data" in err
    assert f"{settings.database_path}: mode 0644" in err
    assert f"{old_mail}: mode 0644" in err

    async def scenario() -> None:
        async with App(settings) as app:
            await app.deliver()

    asyncio.run(scenario())
    assert mode(data) == 0o700 and mode(data / "mail") == 0o700
    assert mode(old_mail) == 0o600
    for path in data.rglob("*"):
        assert mode(path) & 0o077 == 0, path
    stored = list((data / "mail").glob("ECCP-0001-*.eml"))
    assert stored and mode(stored[0]) == 0o600
    assert main(["check", "--config", str(config)]) == 0, capsys.readouterr().err


def test_new_database_and_exports_are_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_from_mapping({"data_dir": str(tmp_path / "d")})
    db = open_database(settings.database_path)
    submit(db, settings)
    assert db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    db.close()
    assert mode(tmp_path / "d") == 0o700
    for name in ("clusterbot.sqlite3", "clusterbot.sqlite3-wal", "clusterbot.sqlite3-shm"):
        path = tmp_path / "d" / name
        if path.exists():
            assert mode(path) == 0o600, name
    config = tmp_path / "c.toml"
    config.write_text(f'data_dir = "{tmp_path / "d"}"\n', "utf-8")
    out = tmp_path / "export.csv"
    argv = ["enquiries", "export", "--format", "csv", "--config", str(config), "-o", str(out)]
    assert main(argv) == 0
    assert mode(out) == 0o600 and "Maria" in out.read_text("utf-8")


def test_umask_is_set_by_the_cli_not_at_import(tmp_path: Path) -> None:
    code = (
        "import os, bot.cli, bot.storage, bot.settings\n"
        "old = os.umask(0o022); os.umask(old); print(oct(old))\n"
        "import bot.cli as c\n"
        "c._dispatch = lambda argv: print(oct(os.umask(0o077))) or 0\n"
        "c.main([])\n"
        "now = os.umask(0o022); print(oct(now))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import os; os.umask(0o022)\n" + code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    before, during, after = result.stdout.split()
    assert (before, during, after) == ("0o22", "0o77", "0o22")


def test_forget_and_retention_erase_the_stored_mail(tmp_path: Path) -> None:
    from bot.app import App

    settings = settings_from_mapping(
        {"data_dir": str(tmp_path / "d"), "smtp": {"host": "embedded"}}, "test"
    )
    mail = settings.mail_dir

    async def scenario() -> None:
        async with App(settings) as app:
            assert app.db is not None
            submit(app.db, settings, user="alice")
            submit(app.db, settings, user="bob", minutes=1)
            await app.deliver()
            # Each: the secretariat's mail and the applicant's acknowledgement.
            assert len(list(mail.glob("ECCP-0001-*.eml"))) == 2
            assert len(list(mail.glob("ECCP-0002-*.eml"))) == 2
            forget_user(app.db, "console", "alice", now=START + timedelta(minutes=5))
            assert list(mail.glob("ECCP-0001-*.eml")) == []
            assert len(list(mail.glob("ECCP-0002-*.eml"))) == 2
            # Retention: the store's files older than privacy.retention go too.
            for path in mail.glob("*.eml"):
                old = time.time() - settings.privacy.retention.total_seconds() - 60
                os.utime(path, (old, old))
            await app.jobs.run_retention()
            assert list(mail.glob("*.eml")) == []

    asyncio.run(scenario())


# -- 3. fail loudly -------------------------------------------------------------------------


def test_no_smtp_with_a_token_is_refused_unless_embedded_on_purpose(
    tmp_path: Path, api: BotApiStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    base = (
        f'data_dir = "data"\n[telegram]\ntoken = "{api.token}"\nbase_url = "{api.base_url}"\n'
        "admin_chat_id = -100123\n"
    )
    config.write_text(base, "utf-8")
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "smtp.host is empty" in err and 'host = "embedded"' in err
    assert api.calls() == [] and not (tmp_path / "data").exists()
    assert main(["check", "--config", str(config)]) == 1
    assert "smtp.host is empty" in capsys.readouterr().err
    config.write_text(base + '[smtp]\nhost = "embedded"\n', "utf-8")
    assert run_problems(load_settings(config, {})) == []
    api.chat(-100123, "supergroup")
    assert main(["check", "--config", str(config), "--telegram"]) == 0
    out = capsys.readouterr().out
    assert "embedded mail store (smtp.host is 'embedded'" in out


def test_a_database_deleted_under_the_app_stops_it_and_issues_no_reference_twice(
    tmp_path: Path,
) -> None:
    from bot.app import App

    settings = settings_from_mapping({"data_dir": str(tmp_path / "var")}, "test")
    stops: list[str] = []

    async def scenario() -> list[str]:
        refs = []
        async with App(settings) as app:
            assert app.db is not None
            app.add_stop_listener(lambda: stops.append("stop"))
            refs.append(submit(app.db, settings, user="a")["ref"])
            shutil.rmtree(tmp_path / "var")  # a careless `rm -r var`
            with pytest.raises(DatabaseFileLost) as caught:
                submit(app.db, settings, user="b")
            assert "was deleted while the bot was running" in str(caught.value)
            await asyncio.sleep(0)
            assert app.fatal is not None and stops == ["stop"]
        # Restored (here: recreated) and restarted: the lost enquiry was never confirmed.
        return refs

    refs = asyncio.run(scenario())
    assert refs == ["ECCP-0001"]


def test_a_replaced_database_is_noticed_at_the_next_write(tmp_path: Path) -> None:
    from bot.app import App

    settings = settings_from_mapping({"data_dir": str(tmp_path / "var")}, "test")

    async def scenario() -> str | None:
        async with App(settings) as app:
            assert app.db is not None
            stopped = asyncio.Event()
            app.add_stop_listener(stopped.set)
            other = tmp_path / "other.sqlite3"
            open_database(other).close()
            os.replace(other, settings.database_path)
            with pytest.raises(DatabaseFileLost):
                submit(app.db, settings)
            await asyncio.wait_for(stopped.wait(), 60)
            return app.fatal

    fatal = asyncio.run(scenario())
    assert fatal is not None and "replaced by another file" in fatal


def test_run_stops_with_one_line_and_exit_3_when_the_database_is_deleted(
    tmp_path: Path, api: BotApiStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'data_dir = "var"\n[telegram]\ntoken = "{api.token}"\nbase_url = "{api.base_url}"\n'
        '[smtp]\nhost = "embedded"\n',
        "utf-8",
    )

    def delete_when_running() -> None:
        api.wait_until(lambda: any(r.method == "getUpdates" for r in api.requests), 60)
        shutil.rmtree(tmp_path / "var")
        # The next message's write transaction finds the file gone.
        api.push_message(5001, "/start", user_id=5001)

    thread = threading.Thread(target=delete_when_running, daemon=True)
    thread.start()
    assert main(["run", "--config", str(config)]) == 3
    thread.join(10)
    err = capsys.readouterr().err
    assert err.count("was deleted while the bot was running") == 1, err
    assert "Traceback" not in err


def test_chat_stops_with_one_line_when_the_database_is_deleted(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('data_dir = "var"\nlanguage = "en"\n', "utf-8")
    chat = subprocess.Popen(
        [str(CLUSTERBOT), "chat", "--config", str(config), "--user", "tester", "--lang", "en"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert chat.stdin is not None and chat.stdout is not None
    try:
        chat.stdin.write("What is the budget?\n")
        chat.stdin.flush()
        # Wait for the answer: the database exists and the conversation is stored.
        seen = ""
        while "6,000,000" not in seen:
            line = chat.stdout.readline()
            assert line, "the chat ended before answering"
            seen += line
        shutil.rmtree(tmp_path / "var")
        chat.stdin.write("What is the deadline?\n")
        chat.stdin.close()
        code = chat.wait(timeout=120)
    finally:
        if chat.poll() is None:
            chat.kill()
    err = chat.stderr.read() if chat.stderr else ""
    assert code == 3, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "was deleted while the bot was running" in lines[0], err


def test_integrity_check_and_a_corrupt_database_name_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "clusterbot.sqlite3").write_bytes(b"this is not a database, only some text " * 200)
    with pytest.raises(StorageError) as caught:
        open_database(data / "clusterbot.sqlite3")
    assert str(data / "clusterbot.sqlite3") in str(caught.value)
    config = tmp_path / "c.toml"
    config.write_text(f'data_dir = "{data}"\n', "utf-8")
    assert main(["enquiries", "list", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{data / 'clusterbot.sqlite3'}: not a usable clusterbot database" in err
    # A damaged page inside a real database: quick_check at open says so.
    good = tmp_path / "good.sqlite3"
    db = open_database(good)
    settings = settings_from_mapping({"data_dir": str(tmp_path)})
    for index in range(30):
        submit(db, settings, user=f"u{index}")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    raw = bytearray(good.read_bytes())
    page = 4096
    for offset in range(page * 3, min(len(raw), page * 6)):
        raw[offset] = 0x5A
    good.write_bytes(bytes(raw))
    with pytest.raises(StorageError) as caught:
        open_database(good)
    assert str(good) in str(caught.value)


# -- 4. check catches what run would fail on ------------------------------------------------


def test_check_lists_every_deployment_mistake_in_one_run_with_secrets_masked(
    tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    shutil.copy(repo_root / "config" / "call.yaml", kb / "call.yaml")
    faq = (repo_root / "config" / "faq.yaml").read_text("utf-8")
    first = faq.index("{{")
    (kb / "faq.yaml").write_text(faq[:first] + "{{ budget|no_such_filter }} " + faq[first:])
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "clusterbot.sqlite3").write_bytes(b"garbage " * 100)
    os.chmod(data / "clusterbot.sqlite3", 0o600)
    config = tmp_path / "c.toml"
    config.write_text(
        'data_dir = "data"\nknowledge_dir = "kb"\n'
        "[telegram]\n"
        'token = "not-a-token-SECRETVALUE"\n'
        "admin_chat_id = 123456\n"
        'webhook_url = "http://bot.example.org/hook"\n'
        "[smtp]\npassword = 987654321\n"
        '[reminders]\nfirst_after = "99999999999999d"\n'
        '[privacy]\nretention = "999999999999999999999d"\n',
        "utf-8",
    )
    assert main(["check", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("clusterbot: error: ")]
    text = "\n".join(lines)

    def one(*words: str) -> None:
        found = [line for line in lines if all(word in line for word in words)]
        assert len(found) == 1, (words, text)

    one("telegram.webhook_url", "https://")
    one("telegram.token", "not a bot token")
    one("telegram.admin_chat_id", "private chat")
    one("smtp.password", "not shown")
    one("reminders.first_after", "at most 3650d")
    one("privacy.retention", "at most 3650d")
    one(str(kb / "faq.yaml"), "answer.", "no_such_filter")
    one(str(data / "clusterbot.sqlite3"), "not a usable clusterbot database")
    assert "SECRETVALUE" not in err and "987654321" not in err
    assert "Traceback" not in err and "unexpected" not in err
    assert f"{len(lines)} problems found." in err


def test_a_webhook_over_http_is_fine_for_a_local_bot_api_server() -> None:
    settings = settings_from_mapping(
        {"telegram": {"base_url": "http://127.0.0.1:8081/bot", "webhook_url": "http://h/x"}}
    )
    assert settings.telegram.webhook_url == "http://h/x"


def test_check_telegram_reports_the_bot_and_the_admin_chat(
    tmp_path: Path, api: BotApiStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"

    def write(token: str, chat: int) -> None:
        config.write_text(
            f'data_dir = "d"\n[telegram]\ntoken = "{token}"\nbase_url = "{api.base_url}"\n'
            f'admin_chat_id = {chat}\n[smtp]\nhost = "embedded"\n',
            "utf-8",
        )

    api.chat(-1001, "supergroup")
    write(api.token, -1001)
    assert main(["check", "--config", str(config), "--telegram"]) == 0
    captured = capsys.readouterr()
    assert f"the bot is @{api.bot_username}" in captured.out
    assert "admin chat -1001 'Group -1001' reachable (supergroup)" in captured.out
    assert "calling getMe" in captured.err
    write(api.token, -1002)
    assert main(["check", "--config", str(config), "--telegram"]) == 1
    err = capsys.readouterr().err
    assert "telegram.admin_chat_id: chat -1002 is not reachable (Chat not found)" in err
    wrong = api.token.split(":")[0] + ":" + "x" * 35
    write(wrong, -1001)
    assert main(["check", "--config", str(config), "--telegram"]) == 1
    err = capsys.readouterr().err
    assert "Telegram refused the token" in err and wrong not in err


def test_check_smtp_says_what_it_is_doing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "c.toml"
    config.write_text(
        f'data_dir = "d"\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        'timeout = "5s"\n',
        "utf-8",
    )
    assert main(["check", "--config", str(config), "--smtp"]) == 1
    captured = capsys.readouterr()
    assert f"SMTP: connecting to 127.0.0.1:{port} (up to 5s)..." in captured.err


# -- 5. logs --------------------------------------------------------------------------------


def test_repeated_warnings_are_collapsed_with_a_count() -> None:
    stream = StringIO()
    handler = CollapsingHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.collapse")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for second in range(40):
            # APScheduler's line names the next run time: still the same warning.
            logger.warning(
                'Execution of job "x (next run at: 12:00:%02d)" skipped: maximum number of '
                "running instances reached (1)",
                second,
            )
        logger.warning("something else")
        logger.info("info lines are never collapsed")
        logger.info("info lines are never collapsed")
        handler.flush()
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5, lines
    assert "maximum number of running instances" in lines[0]
    assert lines[1] == "WARNING last message repeated 39 more times"
    assert lines[2] == "WARNING something else"


def test_info_lines_marked_collapse_are_collapsed_and_counted_before_other_lines() -> None:
    stream = StringIO()
    handler = CollapsingHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.collapse.info")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for _ in range(5):
            logger.info("rate limited: channel=%s", "telegram", extra={"collapse": True})
        logger.info("bot running")
        logger.info("rate limited: channel=%s", "telegram", extra={"collapse": True})
        handler.flush()
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "INFO rate limited: channel=telegram",
        "INFO last message repeated 4 more times",
        "INFO bot running",
        "INFO rate limited: channel=telegram",
    ]


def test_network_errors_name_their_cause() -> None:
    from telegram.error import NetworkError, TimedOut

    def chained(inner: BaseException) -> NetworkError:
        try:
            try:
                raise inner
            except BaseException as exc:
                raise NetworkError("httpx.ConnectError: boom") from exc
        except NetworkError as outer:
            return outer

    assert network_cause(chained(socket.gaierror(-2, "Name or service not known"))) == (
        "DNS lookup failed (Name or service not known)"
    )
    assert network_cause(chained(ConnectionRefusedError(111, "refused"))).startswith(
        "connection refused"
    )
    import ssl

    assert network_cause(chained(ssl.SSLError(1, "WRONG_VERSION_NUMBER"))).startswith(
        "TLS handshake failed"
    )
    assert network_cause(TimedOut()) == "timed out"
    leaky = NetworkError("GET https://api.telegram.org/bot123:SECRET/getMe failed")
    assert "SECRET" not in network_cause(leaky)


def test_a_broken_pipe_exits_quietly(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'data_dir = "{tmp_path / "d"}"\n', "utf-8")
    settings = load_settings(config, {})
    db = open_database(settings.database_path)
    for index in range(3):
        submit(db, settings, user=f"u{index}", minutes=index)
    db.close()
    # A reader that leaves at once: `clusterbot enquiries export | head -0`.
    result = subprocess.run(
        f"'{CLUSTERBOT}' enquiries export --config '{config}' --format jsonl | head -c 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stderr == "", result.stderr


def test_make_chat_says_what_it_is_doing(repo_root: Path) -> None:
    makefile = (repo_root / "Makefile").read_text("utf-8")
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "@echo" in recipe and "installing" in recipe


# -- 6. deployment kit -----------------------------------------------------------------------


def test_backup_taken_while_the_bot_writes_restores_into_a_working_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('data_dir = "live"\n[smtp]\nhost = "embedded"\n', "utf-8")
    settings = load_settings(config, {})
    writer_db = open_database(settings.database_path)
    submit(writer_db, settings, user="first")
    settings.mail_dir.mkdir(mode=0o700)
    (settings.mail_dir / "ECCP-0001-enquiry-abc.eml").write_text("Subject: s\n\nbody\n")
    stop = threading.Event()
    written: list[str] = []

    def keep_writing() -> None:
        index = 0
        while not stop.is_set():
            index += 1
            row = submit(writer_db, settings, user=f"w{index}", minutes=index)
            written.append(row["ref"])

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        api_wait = time.monotonic() + 60
        while len(written) < 5 and time.monotonic() < api_wait:
            time.sleep(0.01)
        archive = tmp_path / "backup.tar.gz"
        at_least = len(written) + 1  # committed before the backup began
        assert main(["backup", "--config", str(config), str(archive)]) == 0
    finally:
        stop.set()
        thread.join(60)
        writer_db.close()
    assert mode(archive) == 0o600
    assert "backup written to" in capsys.readouterr().err
    # Restore as documented: an empty data_dir, the archive extracted into it.
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    if shutil.which("tar"):
        subprocess.run(["tar", "-xzf", str(archive), "-C", str(restored)], check=True)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(restored, filter="data")
    assert (restored / "mail" / "ECCP-0001-enquiry-abc.eml").is_file()
    db = open_database(restored / "clusterbot.sqlite3")  # integrity-checked at open
    ids = [row[0] for row in db.execute("SELECT id FROM enquiries ORDER BY id")]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) >= at_least
    # Each enquiry arrived whole: its mail row with it (one transaction, one snapshot).
    orphans = db.execute(
        "SELECT count(*) FROM enquiries e WHERE NOT EXISTS "
        "(SELECT 1 FROM deliveries d WHERE d.enquiry_id = e.id)"
    ).fetchone()[0]
    assert orphans == 0
    restored_settings = settings_from_mapping({"data_dir": str(restored)})
    row = submit(db, restored_settings, user="after-restore", minutes=10_000)
    assert row["ref"] == f"ECCP-{len(ids) + 1:04d}"
    db.close()


def test_backup_without_a_database_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('data_dir = "none"\n', "utf-8")
    assert main(["backup", "--config", str(config), str(tmp_path / "b.tar")]) == 1
    assert f"no database at {tmp_path / 'none' / 'clusterbot.sqlite3'}" in capsys.readouterr().err
    assert not (tmp_path / "b.tar").exists() and not (tmp_path / "none").exists()


def test_health_reports_a_running_bot_and_stuck_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot import instance

    config = tmp_path / "c.toml"
    config.write_text('data_dir = "d"\n[smtp]\nhost = "embedded"\n', "utf-8")
    settings = load_settings(config, {})
    open_database(settings.database_path).close()
    # `clusterbot run` holds the data directory's lock while it runs.
    with instance.acquire(settings):
        assert main(["health", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"OK   bot: running (pid {os.getpid()})" in out and out.strip().endswith("healthy")
    db = sqlite3.connect(settings.database_path)
    db.execute(
        "INSERT INTO deliveries (transport, kind, idempotency_key, status, next_attempt_at, "
        "created_at) VALUES ('smtp', 'digest', '<x@y>', 'dead', '2020', '2020')"
    )
    db.commit()
    db.close()
    assert main(["health", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "FAIL bot: not running" in out and "FAIL deliveries: 1 refused permanently" in out


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "docs" / "deploy" / "clusterbot.service", encoding="utf-8")
    return parser


def test_the_systemd_unit_is_complete() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["User"] == "clusterbot" and service["Group"] == "clusterbot"
    assert service["StateDirectory"] == "clusterbot"
    assert service["WorkingDirectory"] == "/var/lib/clusterbot"
    assert service["EnvironmentFile"].startswith("/etc/clusterbot/")
    assert service["UMask"] == "0077"
    assert service["Restart"] in ("on-failure", "always")
    assert "3" in service["RestartPreventExitStatus"].split()
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
    assert service["ExecStart"].endswith("clusterbot run")
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "deploy" / "clusterbot.service").read_text("utf-8")
    # The documented install path, pointed at this checkout's executable.
    unit = tmp_path / "clusterbot.service"
    unit.write_text(text.replace("/opt/clusterbot/.venv/bin/clusterbot", str(CLUSTERBOT)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120
    )
    # verify exits 0 on unknown keys and bad values too: any remark about the unit fails.
    remarks = [line for line in result.stderr.splitlines() if "clusterbot.service" in line]
    assert result.returncode == 0 and remarks == [], result.stderr


def test_operations_guide_embeds_the_unit_and_the_kit() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text("utf-8")
    assert "docs/deploy/clusterbot.service" in guide
    for words in ("reverse_proxy", "clusterbot backup", "clusterbot health", "tar -xzf"):
        assert words in guide, words


# -- operator messages ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["--config", "env"])
def test_check_with_a_missing_settings_file_says_only_that(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    missing = tmp_path / "nope.toml"
    if how == "env":
        monkeypatch.setenv("CLUSTERBOT_CONFIG", str(missing))
        argv = ["check"]
    else:
        argv = ["check", "--config", str(missing)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"clusterbot: error: {missing}: settings file not found; check --config or "
        "$CLUSTERBOT_CONFIG, or copy config/clusterbot.example.toml"
    ]


@pytest.mark.parametrize("command", [["chat"], ["run"]])
def test_an_unusable_data_dir_is_named_with_its_path(tmp_path: Path, command: list[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n", encoding="utf-8")
    data_dir = blocker / "data"
    config = tmp_path / "clusterbot.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\n[telegram]\ntoken = "123456:{"A" * 35}"\n'
        '[smtp]\nhost = "embedded"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "CLUSTERBOT_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bot", *command, "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        input="",
        timeout=120,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"clusterbot: error: data_dir: cannot create the folder {data_dir}")
    assert "set data_dir to a folder" in line


@pytest.mark.parametrize("command", [["enquiries", "list"], ["health"], ["backup", "x.tar.gz"]])
def test_no_database_names_an_absolute_path(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(command) == 1
    err = capsys.readouterr().err
    assert f"no database at {tmp_path / 'var' / 'clusterbot.sqlite3'}" in err, err
