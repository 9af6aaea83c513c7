"""Reading the settings: the TOML file, environment secrets, and every problem worded
as one line naming the file, the key and the fix."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.settings import Settings

CONFIG_ENV = "CLUSTERBOT_CONFIG"

# Environment variables that win over the file: (env name, section, key).
SECRET_ENV: tuple[tuple[str, str, str], ...] = (
    ("TELEGRAM_BOT_TOKEN", "telegram", "token"),
    ("TELEGRAM_WEBHOOK_SECRET", "telegram", "webhook_secret"),
    ("SMTP_PASSWORD", "smtp", "password"),
    ("IMAP_PASSWORD", "inbox", "password"),
)
# Keys whose values are never printed, even in an error about their type.
SECRET_KEYS = frozenset(f"{section}.{key}" for _, section, key in SECRET_ENV)


class SettingsError(Exception):
    """One or more settings are invalid; each line names the file, the key and the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _describe_error(error: Mapping[str, Any]) -> str:
    loc = ".".join(str(part) for part in error["loc"] if not isinstance(part, int)) or "(top)"
    kind = error["type"]
    value: Any = error.get("input")
    if loc in SECRET_KEYS:
        # The value of a secret never reaches a terminal or a log, even when it is wrong.
        message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
        if kind == "string_type":
            message = "must be text in quotes"
        return f"{loc}: {message} (the value is not shown: it is a secret)"
    if kind == "extra_forbidden":
        return f"unknown key '{loc}': remove it or check its spelling against the example file"
    if kind == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"{loc}: must be one of {allowed}, got {value!r}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{loc}: must be a whole number, got {value!r}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        ctx = error.get("ctx", {})
        words = {"ge": "at least", "le": "at most", "gt": "more than", "lt": "less than"}
        bounds = " and ".join(f"{words.get(k, k)} {v}" for k, v in ctx.items())
        return f"{loc}: must be {bounds}, got {value!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "value_error":
        # A check across sections names its own keys.
        return message if loc == "(top)" else f"{loc}: {message}"
    return f"{loc}: {message} (got {value!r})"


def _without(data: Mapping[str, Any], loc: tuple[Any, ...]) -> dict[str, Any]:
    """A copy of data without the key at `loc` (a model-level error drops its section)."""
    copy = dict(data)
    if not loc:
        return copy
    head, rest = loc[0], loc[1:]
    if head not in copy:
        return copy
    if rest and isinstance(copy[head], Mapping) and not isinstance(rest[0], int):
        copy[head] = _without(copy[head], rest)
    else:
        del copy[head]
    return copy


def settings_with_problems(
    data: Mapping[str, Any], source: str = "defaults", base_dir: Path | None = None
) -> tuple[Settings, list[str]]:
    """Validate like settings_from_mapping, but never raise: every problem, plus Settings
    with the faulty keys left at their defaults, so `check` can go on to the rest."""
    problems: list[str] = []
    remaining = dict(data)
    for _ in range(50):
        try:
            return settings_from_mapping(remaining, source, base_dir), problems
        except _Invalid as exc:
            problems.extend(exc.problems)
            for loc in exc.locs:
                remaining = _without(remaining, loc)
    return Settings(source=source), problems


class _Invalid(SettingsError):
    def __init__(self, problems: list[str], locs: list[tuple[Any, ...]]) -> None:
        super().__init__(problems)
        self.locs = locs


def settings_from_mapping(
    data: Mapping[str, Any], source: str = "defaults", base_dir: Path | None = None
) -> Settings:
    """Validate a mapping (a parsed TOML file) into Settings, or raise SettingsError.

    With `base_dir` (the settings file's folder), a relative data_dir or knowledge_dir is
    read from there, so the bot finds its data whatever the working directory.
    """
    try:
        settings = Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = [f"{source}: {_describe_error(err)}" for err in exc.errors()]
        raise _Invalid(problems, [tuple(err["loc"]) for err in exc.errors()]) from None
    if base_dir is None:
        return settings
    anchored: dict[str, Path] = {}
    if not settings.data_dir.is_absolute():
        anchored["data_dir"] = base_dir / settings.data_dir
    if settings.knowledge_dir is not None and not settings.knowledge_dir.is_absolute():
        anchored["knowledge_dir"] = base_dir / settings.knowledge_dir
    return settings.model_copy(update=anchored) if anchored else settings


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    merged = dict(data)
    for env_name, section, key in SECRET_ENV:
        value = environ.get(env_name)
        if value:
            current = merged.get(section)
            block = dict(current) if isinstance(current, dict) else {}
            block[key] = value
            merged[section] = block
    return merged


def _read_settings_file(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> tuple[dict[str, Any], str, Path | None]:
    """The parsed file (with environment secrets applied), its name, and its folder."""
    chosen = path if path is not None else environ.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    source = "defaults"
    base_dir: Path | None = None
    if chosen is not None:
        file = Path(chosen)
        source = str(file)
        # Not resolve(): a symlinked config keeps its data beside the link, as written.
        base_dir = Path(os.path.abspath(file)).parent
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SettingsError(
                [
                    f"{file}: settings file not found; check --config or ${CONFIG_ENV}, "
                    "or copy config/clusterbot.example.toml"
                ]
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError([f"{file}: cannot read settings file ({exc})"]) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"{file}: not valid TOML: {exc}"]) from None
    return _apply_environment(data, environ), source, base_dir


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load settings from --config, else $CLUSTERBOT_CONFIG, else defaults; env secrets win."""
    data, source, base_dir = _read_settings_file(path, os.environ if environ is None else environ)
    return settings_from_mapping(data, source, base_dir)


def load_settings_with_problems(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Settings, list[str]]:
    """Like load_settings, but returns every problem with best-effort Settings (for check).

    A settings file that is missing, unreadable or not TOML still raises SettingsError:
    nothing else is worth checking (defaults would describe another bot).
    """
    data, source, base_dir = _read_settings_file(path, os.environ if environ is None else environ)
    return settings_with_problems(data, source, base_dir)
