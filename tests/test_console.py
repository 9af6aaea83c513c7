"""The terminal channel: `clusterbot chat` driven through a pipe, plus its line parsing."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from bot.channels.console import _Output, converse, parse_line, render
from bot.dialogue.engine import Button, Reply
from bot.enquiries import answer_enquiry
from bot.storage import open_database, utc_now

CLUSTERBOT = Path(sys.executable).parent / "clusterbot"


def chat(
    cwd: Path, script: str | bytes, *args: str, user: str = "tester"
) -> subprocess.CompletedProcess[str]:
    """Run `clusterbot chat` in `cwd` with `script` on a piped stdin."""
    data = script.encode() if isinstance(script, str) else script
    env = {**os.environ, "CLUSTERBOT_USER": user}
    env.pop("CLUSTERBOT_CONFIG", None)
    done = subprocess.run(
        [str(CLUSTERBOT), "chat", *args],
        input=data,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=90,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8"),
        done.stderr.decode("utf-8", "replace"),
    )


def _enquiries(cwd: Path) -> list[dict[str, object]]:
    db = sqlite_utils.Database(cwd / "var" / "clusterbot.sqlite3")
    try:
        return list(db["enquiries"].rows)
    finally:
        db.close()


FULL = "\n".join(
    [
        "Can I bring my dog to the info day in Brussels?",
        "1",  # Forward my question
        "Maria Rossi",
        "maria.rossi@example.org",
        "Cluster Lombardia",
        "Italia",
        "I agree",  # a label works as well as a number
        "1",  # Send
        "/status",
        "",
    ]
)


def test_a_whole_enquiry_through_a_pipe(tmp_path: Path) -> None:
    done = chat(tmp_path, FULL, "--lang", "en")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Hello!" in out and "  1) Forward my question" in out
    assert "Your reference is ECCP-0001" in out
    assert "ECCP-0001 – waiting for an answer" in out
    assert "> " not in out  # no prompts when stdin is a pipe
    (enquiry,) = _enquiries(tmp_path)
    assert enquiry["name"] == "Maria Rossi" and enquiry["country"] == "Italy"
    assert enquiry["email"] == "maria.rossi@example.org"
    assert enquiry["organisation"] == "Cluster Lombardia"
    assert enquiry["question"] == "Can I bring my dog to the info day in Brussels?"
    db = sqlite_utils.Database(tmp_path / "var" / "clusterbot.sqlite3")
    mail, receipt = list(db["deliveries"].rows)
    assert mail["enquiry_id"] == enquiry["id"] and mail["kind"] == "enquiry"
    assert receipt["kind"] == "acknowledgement"
    db.close()
    # The embedded mail store kept the e-mail, and the console said where.
    stored = list((tmp_path / "var" / "mail").glob("*.eml"))
    # The secretariat's mail and the applicant's acknowledgement.
    assert len(stored) == 2 and all("ECCP-0001" in f.read_text("utf-8") for f in stored)
    assert "var/mail/" in out
    # The mail report is a line of its own, after the confirmation, before the next reply.
    lines = out.splitlines()
    saved = next(i for i, line in enumerate(lines) if line.startswith("e-mail saved to var/mail/"))
    sent = next(i for i, line in enumerate(lines) if "Your reference is ECCP-0001" in line)
    status = next(i for i, line in enumerate(lines) if line == "Your enquiries:")
    assert sent < saved < status


def test_a_long_script_is_not_refused_as_a_flood(tmp_path: Path) -> None:
    # The terminal has one local user: a script longer than limits.messages_per_minute
    # still runs to the end (Telegram users keep the limit, see test_engine).
    done = chat(tmp_path, "What is the budget?\n" * 30 + FULL, "--lang", "en")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("EUR 6,000,000") == 30
    assert "very quickly" not in done.stdout
    assert "Your reference is ECCP-0001" in done.stdout


def test_ctrl_d_mid_form_then_a_restart_continues(tmp_path: Path) -> None:
    first = chat(tmp_path, "/contact\nMaria Rossi\nmaria@example.org\n", "--lang", "en")
    assert first.returncode == 0, first.stderr
    assert "Which organisation" in first.stdout
    second = chat(tmp_path, "Cluster Lombardia\n1\nWhat is the minimum consortium size?\n1\n1\n")
    assert second.returncode == 0, second.stderr
    assert "Welcome back" in second.stdout and "Which organisation" in second.stdout
    assert "Your reference is ECCP-0001" in second.stdout
    (enquiry,) = _enquiries(tmp_path)
    assert enquiry["name"] == "Maria Rossi" and enquiry["country"] == "Italy"


def test_the_secretariat_answer_is_shown_once(tmp_path: Path) -> None:
    assert chat(tmp_path, FULL, "--lang", "en").returncode == 0
    db = open_database(tmp_path / "var" / "clusterbot.sqlite3")
    answer_enquiry(db, "ECCP-0001", "Dogs are welcome.", actor="admin:1", now=utc_now())
    db.close()
    shown = chat(tmp_path, "")
    assert "The secretariat answered your enquiry ECCP-0001:*\nDogs are welcome." in shown.stdout
    assert "Dogs are welcome." not in chat(tmp_path, "").stdout
    assert "Dogs" not in chat(tmp_path, "", user="someone-else").stdout


def test_quit_stops_reading(tmp_path: Path) -> None:
    done = chat(tmp_path, "/help\n/quit\n/contact\n", "--lang", "en")
    assert done.returncode == 0
    assert "/contact" in done.stdout and "What is your name?" not in done.stdout


def test_italian_with_a_config_file_and_malformed_input(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nlanguage = "it"\n', "utf-8")
    script = (
        b"/start\r\n"
        b"\xff\xfe broken bytes\n"
        b"\x1b[2J\x00\x07 control\n"
        + b"x"
        * 10_000
        + b"\n<b>grassetto</b> *stella* _sotto_ [a](b)\n"
        b"/contact\n"
        b"Maria\x1b[31m Rossi\n"
        b"/cancel\n"
    )
    done = chat(tmp_path, script, "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "Ciao!" in done.stdout
    assert "caratteri di controllo" in done.stdout
    assert "Annullato" in done.stdout
    assert "\x1b" not in done.stdout and "\x00" not in done.stdout
    assert (tmp_path / "data" / "clusterbot.sqlite3").exists()
    assert not (tmp_path / "var").exists()


def test_a_bad_config_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('language = "fr"\n', "utf-8")
    done = chat(tmp_path, "", "--config", str(config))
    assert done.returncode == 1
    assert done.stderr.startswith("clusterbot: error: ") and "Traceback" not in done.stderr


def test_a_lost_database_is_refused_unless_told_new_database(tmp_path: Path) -> None:
    """The data folder shows a bot ran (its marker), but the database is gone: `chat`
    refuses like `run` (one line: restore the backup, or --new-database), and with
    --new-database starts empty, continuing the references."""
    data = tmp_path / "var"
    data.mkdir()
    (data / "clusterbot.instance").write_text('{"last_enquiry_id": 41}\n', "utf-8")
    refused = chat(tmp_path, "What is the budget?\n")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("clusterbot: error: no database at ")
    assert "restore the backup" in lines[0] and "--new-database" in lines[0]
    assert not (data / "clusterbot.sqlite3").exists()

    done = chat(tmp_path, FULL, "--new-database")
    assert done.returncode == 0, done.stderr
    # ECCP-0001 to ECCP-0041 were issued from the lost database: never again.
    assert [row["ref"] for row in _enquiries(tmp_path)] == ["ECCP-0042"]
    # The database is there now: the next chat needs no flag.
    assert chat(tmp_path, "/quit\n").returncode == 0


def test_chat_help() -> None:
    done = subprocess.run(
        [str(CLUSTERBOT), "chat", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "--lang" in done.stdout and "Ctrl-D" in done.stdout


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2\n", ("button", "b", "")),
        (" Italia \n", ("button", "a", "")),
        ("3\n", ("text", "3", "")),
        ("/start contact\n", ("command", "start", "contact")),
        ("/help@clusterbot\n", ("command", "help", "")),
        ("/quit\n", None),
        ("/EXIT\n", None),
        ("/ not a command\n", ("text", "/ not a command", "")),
        ("hello\r\n", ("text", "hello", "")),
    ],
)
def test_parse_line(line: str, expected: tuple[str, str, str] | None) -> None:
    buttons = [Button("a", "Italia"), Button("b", "Spagna")]
    assert parse_line(line, buttons) == expected


def test_a_label_with_an_emoji_or_punctuation_can_be_typed() -> None:
    buttons = [Button("contact", "✉️ Write to the secretariat"), Button("forget:no", "No, keep")]
    assert parse_line("write to the secretariat\n", buttons) == ("button", "contact", "")
    assert parse_line("no keep\n", buttons) == ("button", "forget:no", "")
    assert parse_line("write\n", buttons) == ("text", "write", "")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_report_while_the_prompt_waits_gets_its_own_line_and_a_new_prompt() -> None:
    out = _Output(_Tty(), interactive=True)
    out("hello")
    out.report("e-mail saved to var/mail/x.eml")
    out.prompt()
    out.report("e-mail saved to var/mail/y.eml")
    assert out.stream.getvalue() == (
        "hello\ne-mail saved to var/mail/x.eml\n> \ne-mail saved to var/mail/y.eml\n> "
    )
    piped = _Output(io.StringIO())
    piped.prompt()
    piped.report("e-mail saved to var/mail/z.eml")
    assert piped.stream.getvalue() == "e-mail saved to var/mail/z.eml\n"


class _Engine:
    """Answers every event with its own description."""

    db: Any = None

    def handle(self, event: Any) -> list[Reply]:
        return [Reply(f"reply to {event.kind} {event.text or event.command}")]


class _SlowTtyInput:
    """A terminal's stdin: the second line comes after the app reported something."""

    def __init__(self, report: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.lines = ["first\n", "second\n"]
        self.report = report
        self.loop = loop

    def isatty(self) -> bool:
        return True

    def readline(self) -> str:
        if len(self.lines) == 1:
            time.sleep(0.2)  # the user is still typing at the prompt...
            self.loop.call_soon_threadsafe(self.report, "e-mail saved to var/mail/a.eml")
            time.sleep(0.2)
        return self.lines.pop(0) if self.lines else ""


def test_an_interactive_report_reprints_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.channels.console as console

    monkeypatch.setattr(console, "pending_answers", lambda engine, user_id: [])
    out = _Output(_Tty())

    async def main() -> None:
        stdin = _SlowTtyInput(out.report, asyncio.get_running_loop())
        await converse(_Engine(), user_id="u", stdin=stdin, output=out)  # type: ignore[arg-type]

    asyncio.run(main())
    text = out.stream.getvalue()
    assert "reply to text first\n> \ne-mail saved to var/mail/a.eml\n> \n" in text
    assert text.index("e-mail saved") < text.index("reply to text second")


def test_render_numbers_buttons_across_replies() -> None:
    text, buttons = render(
        [
            Reply("one", (Button("a", "A"),), title="T"),
            Reply("two\x1b[0m", (Button("b", "B"),)),
        ]
    )
    assert text == "*T*\none\n  1) A\n\ntwo\ufffd[0m\n  2) B"
    assert [b.id for b in buttons] == ["a", "b"]
