"""`clusterbot enquiries list|show|close|export`, end to end on a real database file."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.enquiries import answer_enquiry, submit_enquiry
from bot.settings.load import load_settings
from bot.storage import open_database
from tests.dialogue_support import START

CLUSTERBOT = Path(sys.executable).parent / "clusterbot"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A settings file whose database holds three enquiries: open, answered, open."""
    path = tmp_path / "settings.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n', "utf-8")
    settings = load_settings(path)
    db = open_database(settings.database_path)
    people = [
        ("Maria Rossi", "maria@example.org", "Cluster Lombardia", "Italy"),
        ("Hans Müller", "hans@example.de", "=cmd|' /C calc'!A0", "Germany"),
        ("Ana Silva", "ana@example.pt", "Cluster Norte", "Portugal"),
    ]
    for index, (name, email, organisation, country) in enumerate(people):
        submit_enquiry(
            db,
            settings,
            {
                "name": name,
                "email": email,
                "organisation": organisation,
                "country": country,
                "question": f"Question number {index + 1}, with a comma\nand a second line?",
            },
            channel="console",
            user_id=f"user{index}",
            chat_id=f"user{index}",
            username=None,
            lang="en",
            faq_history=["What is the budget?"] if index == 0 else [],
            now=START + timedelta(minutes=index),
        )
    answer_enquiry(db, "ECCP-0002", "Yes.", actor="admin:7", now=START + timedelta(hours=1))
    db.close()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_open_by_default_oldest_first(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "enquiries", "list", "--config", str(config))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["REF", "STATUS", "CREATED"]
    assert [line.split()[0] for line in lines[1:]] == ["ECCP-0001", "ECCP-0003"]
    # Times are shown in the configured zone (Europe/Rome, UTC+1 in November).
    assert "2026-11-26 10:00" in lines[1]


def test_list_json_with_status(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "enquiries", "--config", str(config), "list", "--status", "all", "--json"
    )
    assert code == 0
    records = json.loads(out)
    assert [(r["ref"], r["status"]) for r in records] == [
        ("ECCP-0001", "open"),
        ("ECCP-0002", "answered"),
        ("ECCP-0003", "open"),
    ]
    assert records[0]["faq_history"] == ["What is the budget?"]
    code, out, _ = run(
        capsys, "enquiries", "list", "--status", "answered", "--json", "--config", str(config)
    )
    assert [r["ref"] for r in json.loads(out)] == ["ECCP-0002"]
    code, out, _ = run(capsys, "enquiries", "list", "--status", "closed", "--config", str(config))
    assert out.strip() == "no closed enquiries"


def test_an_erased_applicant_no_longer_clutters_the_open_list(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.enquiries import forget_user

    db = open_database(load_settings(config).database_path)
    forget_user(db, "console", "user0", now=START + timedelta(days=1))
    db.close()
    code, out, _ = run(capsys, "enquiries", "list", "--config", str(config))
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["ECCP-0003"]
    code, out, _ = run(capsys, "enquiries", "list", "--status", "closed", "--config", str(config))
    assert "ECCP-0001" in out and "(erased)" in out and "Maria" not in out
    code, out, _ = run(capsys, "enquiries", "show", "ECCP-0001", "--config", str(config))
    assert "Closed by:    applicant" in out and "erased at the applicant's request" in out


def test_export_counts_in_words(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text(f'data_dir = "{tmp_path / "empty"}"\n', "utf-8")
    # An empty database, as the bot leaves it after its first start.
    open_database(load_settings(empty).database_path).close()
    target = tmp_path / "out.jsonl"
    args = ("enquiries", "export", "--format", "jsonl", "-o", str(target), "--config")
    code, _, err = run(capsys, *args, str(empty))
    assert (code, err) == (0, f"0 enquiries written to {target}\n")
    db = open_database(load_settings(empty).database_path)
    submit_enquiry(
        db,
        load_settings(empty),
        {
            "name": "Maria Rossi",
            "email": "maria@example.org",
            "organisation": "Cluster Lombardia",
            "country": "Italy",
            "question": "How many partners do we need?",
        },
        channel="console",
        user_id="u",
        chat_id="u",
        username=None,
        lang="en",
        faq_history=[],
        now=START,
    )
    db.close()
    code, _, err = run(capsys, *args, str(empty))
    assert (code, err) == (0, f"1 enquiry written to {target}\n")


def test_show_one_with_its_history(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "enquiries", "show", "eccp-2", "--config", str(config))
    assert code == 0
    assert "Reference:    ECCP-0002" in out and "Hans Müller" in out
    assert "Answer:\n  Yes." in out
    assert "created" in out and "answered" in out and "admin:7" in out
    code, out, _ = run(capsys, "enquiries", "show", "ECCP-0001", "--json", "--config", str(config))
    record = json.loads(out)
    assert (
        record["history"][0]["event"] == "created" and record["deliveries"][0]["kind"] == "enquiry"
    )


def test_close_then_close_again_is_a_user_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "enquiries", "close", "ECCP-0003", "--note", "dup", "--config", str(config)
    )
    assert (code, out) == (0, "ECCP-0003 closed\n")
    code, out, err = run(capsys, "enquiries", "close", "ECCP-0003", "--config", str(config))
    assert code == 1 and err == "clusterbot: error: ECCP-0003 is already closed\n"
    code, _, err = run(capsys, "enquiries", "show", "ECCP-0042", "--config", str(config))
    assert code == 1 and "no enquiry with reference 'ECCP-0042'" in err
    code, out, _ = run(capsys, "enquiries", "show", "ECCP-0003", "--config", str(config))
    assert "Status:       closed" in out and "Note:         dup" in out


def test_export_csv_and_jsonl_to_files(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out.csv"
    code, _, err = run(
        capsys, "enquiries", "export", "--format", "csv", "-o", str(target), "--config", str(config)
    )
    assert code == 0 and "3 enquiries written" in err
    with target.open(encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["ref"] for row in table] == ["ECCP-0001", "ECCP-0002", "ECCP-0003"]
    assert table[0]["question"] == "Question number 1, with a comma\nand a second line?"
    assert table[1]["organisation"].startswith("'=")
    code, out, _ = run(capsys, "enquiries", "export", "--format", "jsonl", "--config", str(config))
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in records] == ["open", "answered", "open"]
    assert records[1]["answer"] == "Yes."
    code, _, err = run(
        capsys,
        "enquiries",
        "export",
        "--format",
        "csv",
        "-o",
        str(tmp_path / "missing" / "dir" / "x.csv"),
        "--config",
        str(config),
    )
    assert code == 1 and err.startswith("clusterbot: error: ") and err.count("\n") == 1


def test_exit_codes_through_the_real_command(config: Path, tmp_path: Path) -> None:
    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLUSTERBOT), "enquiries", *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    assert cli("list", "--config", str(config)).returncode == 0
    usage = cli("list", "--status", "bogus")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    missing = cli("export", "--config", str(config))
    assert missing.returncode == 2 and "--format" in missing.stderr
    bad = cli("list", "--config", str(tmp_path / "nope.toml"))
    assert bad.returncode == 1 and "settings file not found" in bad.stderr
    assert "Traceback" not in bad.stderr
    exported = cli("export", "--format", "csv", "--config", str(config))
    assert next(csv.reader(io.StringIO(exported.stdout)))[:2] == ["id", "ref"]
    for action in ("list", "show", "close", "export"):
        shown = cli(action, "--help")
        assert shown.returncode == 0 and "--config" in shown.stdout
