"""`clusterbot inbox import|status` and the settings they read, end to end on a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.enquiries import get_enquiry
from bot.settings.load import SettingsError, settings_from_mapping
from tests.dialogue_support import open_db
from tests.inbound_support import inbox_settings, reply, submit


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "clusterbot.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\n[secretariat]\nanswer_from = ["@segreteria-eccp.eu"]\n',
        encoding="utf-8",
    )
    return config


def test_import_a_saved_reply_answers_the_enquiry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No [inbox]: enquiries reply to the applicant, and a saved reply can still be imported.
    settings = inbox_settings(tmp_path, inbox={"host": ""})
    db = open_db(settings.database_path)
    enquiry = submit(db, settings)
    eml = tmp_path / "reply.eml"
    eml.write_bytes(reply(db, settings, enquiry, to="segreteria@example.org", thread=False))
    db.close()
    config = _config(tmp_path)
    assert main(["inbox", "import", str(eml), "--config", str(config)]) == 0
    assert "answer recorded for ECCP-0001" in capsys.readouterr().out
    assert main(["inbox", "import", str(eml), "--config", str(config)]) == 0
    assert "already processed" in capsys.readouterr().out
    db = open_db(settings.database_path)
    row = get_enquiry(db, "ECCP-0001")
    assert row is not None and row["status"] == "answered"
    assert main(["enquiries", "show", "ECCP-0001", "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert "Received e-mails:" in shown and "answer from anna.bianchi@segreteria-eccp.eu" in shown
    assert main(["inbox", "status", "--config", str(config)]) == 0
    assert "messages: 1 answer" in capsys.readouterr().out


def test_import_reports_what_was_kept_and_refuses_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    missing = tmp_path / "nope.eml"
    assert main(["inbox", "import", str(missing), "--config", str(config)]) == 1
    assert capsys.readouterr().err.strip() == f"clusterbot: error: {missing}: file not found"
    junk = tmp_path / "junk.eml"
    junk.write_bytes(b"\x00\x01 not a mail")
    assert main(["inbox", "import", str(junk), "--config", str(config)]) == 1
    assert "not an e-mail" in capsys.readouterr().err
    stray = tmp_path / "stray.eml"
    stray.write_bytes(b"From: x@gmail.com\r\nSubject: hi\r\nMessage-ID: <s@x>\r\n\r\nhello\r\n")
    assert main(["inbox", "import", str(stray), "--config", str(config)]) == 0
    assert "unmatched" in capsys.readouterr().out
    assert main(["inbox", "status", "--config", str(config)]) == 0
    status = capsys.readouterr().out
    assert "mailbox: none" in status and "x@gmail.com" in status and "unmatched" in status


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inbox": {"host": "imap.example.org"}}, "inbox.username and inbox.reply_address"),
        ({"inbox": {"reply_address": "bot+x@example.org"}}, "inbox.reply_address: must be"),
        ({"inbox": {"security": "ssl"}}, "inbox.security: must be one of"),
        ({"inbox": {"poll_every": "soon"}}, "inbox.poll_every: must be a duration"),
        ({"secretariat": {"answer_from": ["example.org"]}}, "secretariat.answer_from: each"),
    ],
)
def test_inbox_settings_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_mapping(data, "f.toml")
    assert any(message in problem for problem in caught.value.problems), caught.value.problems


def test_imap_password_comes_from_the_environment(tmp_path: Path) -> None:
    from bot.settings.load import load_settings

    config = tmp_path / "c.toml"
    config.write_text('[inbox]\npassword = "in-file"\n', encoding="utf-8")
    settings = load_settings(config, environ={"IMAP_PASSWORD": "from-env"})
    assert settings.inbox.password == "from-env"
