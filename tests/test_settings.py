"""Settings: TOML parsing, environment secrets, durations and precise error messages."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from bot.settings import Settings
from bot.settings.durations import format_duration, parse_duration
from bot.settings.load import SettingsError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clusterbot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ or {})
    return caught.value.problems


def test_defaults_without_file() -> None:
    settings = load_settings(None, {})
    assert settings.language == "it"
    assert settings.source == "defaults"
    assert settings.data_dir == Path("var")
    assert settings.database_path == Path("var/clusterbot.sqlite3")
    assert settings.mail_dir == Path("var/mail")
    assert settings.reminders.first_after == timedelta(hours=48)
    assert settings.privacy.retention == timedelta(days=365)
    assert settings.resolved_knowledge_dir.joinpath("call.yaml").is_file()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("48h", timedelta(hours=48)),
        ("2d", timedelta(days=2)),
        (" 5 m ", timedelta(minutes=5)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "10", "1w", "-5m", "1.5h", "h", "5 minutes"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration such as '90s'"):
        parse_duration(text)


def test_file_values_and_env_secrets_win(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
language = "en"
[telegram]
token = "from-file"
admin_user_ids = [1, 2]
[smtp]
password = "file-pass"
[reminders]
first_after = "15m"
""",
    )
    settings = load_settings(path, {"TELEGRAM_BOT_TOKEN": "from-env", "SMTP_PASSWORD": "env-pass"})
    assert settings.language == "en"
    assert settings.telegram.token == "from-env"
    assert settings.smtp.password == "env-pass"
    assert settings.telegram.admin_user_ids == (1, 2)
    assert settings.reminders.first_after == timedelta(minutes=15)
    assert settings.source == str(path)


def test_config_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, 'language = "en"\n')
    assert load_settings(None, {"CLUSTERBOT_CONFIG": str(path)}).language == "en"


def test_settings_are_immutable() -> None:
    settings = load_settings(None, {})
    with pytest.raises(Exception, match="frozen"):
        settings.language = "en"  # type: ignore[misc]


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    (problem,) = problems_of(path)
    assert str(path) in problem
    assert "not found" in problem


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "language = \n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: not valid TOML")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('language = "fr"', "language: must be one of 'it' or 'en', got 'fr'"),
        (
            '[reminders]\nfirst_after = "2 days"',
            "reminders.first_after: must be a duration such as '90s'",
        ),
        (
            '[reminders]\nmax_count = "many"',
            "reminders.max_count: must be a whole number, got 'many'",
        ),
        ("[smtp]\nport = 70000", "smtp.port: must be at most 65535, got 70000"),
        ('[smtp]\nsecurity = "ssl"', "smtp.security: must be one of 'starttls', 'tls' or 'none'"),
        ('[smtp]\nsender = "not an address"', "smtp.sender: must be an address like"),
        ('[secretariat]\nemail = "a@b"', "secretariat.email: must be one e-mail address"),
        ('[digest]\ncron = "every day"', "digest.cron: must be a 5-field crontab expression"),
        ('[digest]\ncron = "0 25 * * *"', "digest.cron: is not a valid crontab expression"),
        ('timezone = "Mars/Base"', "timezone: must be an IANA time zone"),
        (
            '[telegram]\nbase_url = "ftp://x"',
            "telegram.base_url: must start with http:// or https://",
        ),
        (
            '[telegram]\nwebhook_secret = "has space"',
            "telegram.webhook_secret: must be 1-256 characters",
        ),
        (
            '[enquiries]\nreference_prefix = "ec-1"',
            "enquiries.reference_prefix: must be 1-10 capital",
        ),
        ("[faq]\nmin_score = 2", "faq.min_score: must be at most 1.0, got 2"),
        ('colour = "blue"', "unknown key 'colour'"),
        ('[smtp]\nhots = "x"', "unknown key 'smtp.hots'"),
    ],
)
def test_each_bad_value_names_file_key_and_allowed(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path, text + "\n")
    problems = problems_of(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: ")
    assert fragment in problems[0]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, 'language = "fr"\n[smtp]\nport = 0\n[privacy]\nretention = "forever"\n')
    problems = problems_of(path)
    assert len(problems) == 3
    assert any("privacy.retention" in p for p in problems)


def _keys(model: type[Settings] | object, prefix: str = "") -> set[str]:
    from pydantic import BaseModel

    keys: set[str] = set()
    assert isinstance(model, type) and issubclass(model, BaseModel)
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def _flatten(data: dict[str, object], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        if isinstance(value, dict):
            keys |= _flatten(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_example_file_documents_every_key(repo_root: Path) -> None:
    example = repo_root / "config" / "clusterbot.example.toml"
    text = example.read_text(encoding="utf-8")
    # knowledge_dir is shipped commented out: the packaged knowledge base is the default.
    uncommented = text.replace("# knowledge_dir =", "knowledge_dir =")
    documented = _flatten(tomllib.loads(uncommented))
    assert documented == _keys(Settings)
    settings = load_settings(example, {})
    # A relative data_dir is read from the settings file's folder.
    expected = {"source": str(example), "data_dir": example.parent / "var"}
    assert settings == load_settings(None, {}).model_copy(update=expected)
