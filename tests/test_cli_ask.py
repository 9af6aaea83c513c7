"""`clusterbot ask` and `clusterbot check` end to end, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def clusterbot(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "CLUSTERBOT_CONFIG"}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=60,
    )


def test_ask_answers_the_budget_in_italian() -> None:
    result = clusterbot("ask", "Qual è il budget totale del bando?")
    assert result.returncode == 0, result.stderr
    assert "6.000.000 EUR" in result.stdout
    assert "6.000.000.000" not in result.stdout


def test_ask_json_has_the_documented_shape() -> None:
    result = clusterbot("ask", "What is the deadline?", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert set(record) == {"faq_id", "score", "lang", "answer", "topic", "answers", "reply"}
    assert record["topic"] == "deadline"
    assert record["answers"][0] == {
        "faq_id": record["faq_id"],
        "topic": record["topic"],
        "answer": record["answer"],
    }
    assert record["lang"] == "en"
    assert 0.0 <= record["score"] <= 1.0
    assert "2 February 2021" in record["answer"]


def test_ask_lang_overrides_the_reply_language() -> None:
    result = clusterbot("ask", "What is the maximum grant?", "--lang", "it", "--json")
    record = json.loads(result.stdout)
    assert record["lang"] == "it"
    assert record["faq_id"] == "max-grant"
    assert "500.000 EUR" in record["answer"]


def test_ask_stdin_answers_one_json_object_per_line() -> None:
    questions = ["budget?", "", "Erasmus+ deadline", "quanti progetti saranno finanziati?"]
    result = clusterbot("ask", "-", "--json", stdin="\n".join(questions) + "\n")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["topic"] for r in records] == ["budget", None, "funded-proposals"]
    assert records[1]["answer"]


def test_ask_fallback_is_null() -> None:
    record = json.loads(clusterbot("ask", "what's the weather like in Rome?", "--json").stdout)
    assert record["topic"] is None
    assert record["answers"] == []


def test_ask_empty_question_is_a_user_error() -> None:
    result = clusterbot("ask", "   ")
    assert result.returncode == 1
    assert result.stderr.startswith("clusterbot: error: the question is empty")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [["ask"], ["ask", "x", "--lang", "fr"], ["nonsense"], ["ask", "x", "--bogus"], []],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = clusterbot(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_for_every_command() -> None:
    from bot.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"ask", "check"} <= set(commands)
    for name in commands:
        result = clusterbot(name, "--help")
        assert result.returncode == 0, name
        assert "usage: clusterbot" in result.stdout


def test_check_passes_on_the_shipped_files(repo_root: Path) -> None:
    result = clusterbot("check", "--config", str(repo_root / "config" / "clusterbot.example.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("OK")


def test_check_reports_every_problem_at_once(tmp_path: Path, repo_root: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "call.yaml").write_text(
        (repo_root / "config" / "call.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    faq = (repo_root / "config" / "faq.yaml").read_text(encoding="utf-8")
    (kb / "faq.yaml").write_text(faq.replace("id: budget", "id: budgett"), encoding="utf-8")
    config = tmp_path / "bad.toml"
    config.write_text(
        f'language = "de"\nknowledge_dir = "{kb}"\n[smtp]\nport = "x"\n', encoding="utf-8"
    )
    result = clusterbot("check", "--config", str(config))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(f"{config}: language: must be one of 'it' or 'en', got 'de'" in x for x in lines)
    assert any(f"{config}: smtp.port: must be a whole number, got 'x'" in x for x in lines)
    assert "Traceback" not in result.stderr


def test_check_reports_knowledge_problems(tmp_path: Path, repo_root: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "call.yaml").write_text(
        (repo_root / "config" / "call.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    faq = (repo_root / "config" / "faq.yaml").read_text(encoding="utf-8")
    (kb / "faq.yaml").write_text(faq.replace("id: budget\n", "id: budgett\n"), encoding="utf-8")
    config = tmp_path / "c.toml"
    config.write_text(f'knowledge_dir = "{kb}"\n', encoding="utf-8")
    result = clusterbot("check", "--config", str(config))
    assert result.returncode == 1
    assert f"{kb / 'faq.yaml'}: required entry 'budget' is missing" in result.stderr


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = clusterbot("ask", "budget?", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "settings file not found" in result.stderr


def test_ask_does_not_import_telegram() -> None:
    code = (
        "import sys; from bot.cli import main; main(['ask', 'budget?']); "
        "assert 'telegram' not in sys.modules, 'telegram imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_check_smtp_names_the_embedded_store(tmp_path: Path) -> None:
    result = clusterbot("check", "--smtp", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SMTP: embedded mail store" in result.stdout


def test_check_smtp_reports_an_unreachable_server(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "smtp.toml"
    config.write_text(f'[smtp]\nhost = "127.0.0.1"\nport = {port}\n', encoding="utf-8")
    result = clusterbot("check", "--smtp", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot connect and log in to 127.0.0.1:{port}" in result.stderr
    assert "1 problem found." in result.stderr


def test_a_message_that_does_not_say_its_language_gets_the_letters_hint() -> None:
    """'Deadline?' names no word only one language uses; with no conversation, the
    language library's lean decides before the configured default (Italian)."""
    for question, lang in (("Deadline?", "en"), ("Esatto", "it"), ("ok", "it")):
        record = json.loads(clusterbot("ask", question, "--json").stdout)
        assert record["lang"] == lang, question
