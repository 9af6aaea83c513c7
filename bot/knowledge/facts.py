"""Call facts: load the call's YAML file into typed values with their sources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from bot.knowledge.errors import KnowledgeError
from bot.knowledge.formatting import format_day, format_moment, format_money, format_percent

_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

LANGUAGES = ("it", "en")
FACT_TYPES = ("text", "list", "integer", "percent", "money", "date", "datetime", "url")


@dataclass(frozen=True)
class Money:
    """An amount in a currency."""

    amount: int
    currency: str


@dataclass(frozen=True)
class Fact:
    """One fact of the call: its type, value (per language where it varies) and sources."""

    name: str
    type: str
    value: Any
    sources: tuple[str, ...]

    def localized(self, lang: str) -> Any:
        """The value in `lang` (text and list facts may differ per language)."""
        if isinstance(self.value, Mapping):
            return self.value[lang]
        return self.value

    def display(self, lang: str) -> str:
        """The value formatted for `lang`, as a template would print it by default."""
        value = self.localized(lang)
        if isinstance(value, Money):
            return format_money(value.amount, value.currency, lang)
        if self.type == "percent":
            return format_percent(value, lang)
        if isinstance(value, datetime):
            return format_moment(value, lang)
        if isinstance(value, date):
            return format_day(value, lang)
        if isinstance(value, list):
            return ", ".join(str(item) for item in value)
        return str(value)


@dataclass(frozen=True)
class Call:
    """A funding call: its identifier and its facts by name."""

    id: str
    facts: Mapping[str, Fact]
    path: Path

    @property
    def deadline(self) -> datetime:
        """The submission deadline, timezone-aware."""
        value = self.facts["deadline"].value
        assert isinstance(value, datetime)
        return value


def _per_language(raw: Any, where: str, problems: list[str], check: type | tuple[type, ...]) -> Any:
    if isinstance(raw, Mapping):
        missing = [lang for lang in LANGUAGES if lang not in raw]
        extra = [key for key in raw if key not in LANGUAGES]
        if missing:
            problems.append(f"{where}: missing translation for {', '.join(missing)}")
        if extra:
            problems.append(f"{where}: unknown language {', '.join(map(str, extra))} (use it, en)")
        for lang in LANGUAGES:
            if lang in raw and not isinstance(raw[lang], check):
                problems.append(f"{where}.{lang}: has the wrong type")
        return {lang: raw.get(lang) for lang in LANGUAGES}
    if not isinstance(raw, check):
        problems.append(f"{where}: has the wrong type")
    return raw


def _parse_value(kind: str, raw: Any, where: str, problems: list[str]) -> Any:
    if kind == "text":
        return _per_language(raw, where, problems, (str, int))
    if kind == "list":
        return _per_language(raw, where, problems, list)
    if kind in ("integer", "percent"):
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            problems.append(f"{where}: must be a number, got {raw!r}")
        return raw
    if kind == "url":
        if not isinstance(raw, str) or not raw.startswith(("https://", "http://")):
            problems.append(f"{where}: must be an http(s) link, got {raw!r}")
        return raw
    if kind == "money":
        if not isinstance(raw, Mapping) or not isinstance(raw.get("amount"), int):
            problems.append(f"{where}: must be {{amount: <whole number>, currency: EUR}}")
            return Money(0, "EUR")
        return Money(int(raw["amount"]), str(raw.get("currency", "EUR")))
    if kind == "date":
        if isinstance(raw, date) and not isinstance(raw, datetime):
            return raw
        try:
            return date.fromisoformat(str(raw))
        except ValueError:
            problems.append(f"{where}: must be a date like 2021-02-02, got {raw!r}")
            return date(1970, 1, 1)
    if kind == "datetime":
        if not isinstance(raw, Mapping) or "at" not in raw or "timezone" not in raw:
            problems.append(
                f"{where}: must be {{at: 'YYYY-MM-DDTHH:MM', timezone: Europe/Brussels}}"
            )
            return datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
        try:
            zone = ZoneInfo(str(raw["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"{where}.timezone: unknown time zone {raw['timezone']!r}")
            zone = ZoneInfo("UTC")
        try:
            at = datetime.fromisoformat(str(raw["at"]))
        except ValueError:
            problems.append(f"{where}.at: must be like 2021-02-02T17:00, got {raw['at']!r}")
            at = datetime(1970, 1, 1)
        return at.replace(tzinfo=zone)
    return raw


def parse_call(data: Any, path: Path) -> Call:
    """Validate a parsed call document; every problem names the file and the fact."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise KnowledgeError([f"{path}: must be a mapping with 'id' and 'facts'"])
    call_id = data.get("id")
    if not isinstance(call_id, str) or not call_id:
        problems.append(f"{path}: 'id' is missing (the call identifier)")
    raw_facts = data.get("facts")
    if not isinstance(raw_facts, Mapping):
        raise KnowledgeError([*problems, f"{path}: 'facts' is missing or not a mapping"])
    facts: dict[str, Fact] = {}
    for name, body in raw_facts.items():
        where = f"{path}: fact '{name}'"
        if not isinstance(body, Mapping):
            problems.append(f"{where}: must be a mapping with type, value and sources")
            continue
        kind = body.get("type")
        if kind not in FACT_TYPES:
            problems.append(f"{where}: type must be one of {', '.join(FACT_TYPES)}, got {kind!r}")
            continue
        if "value" not in body:
            problems.append(f"{where}: 'value' is missing")
            continue
        sources = body.get("sources")
        if not isinstance(sources, list) or not sources:
            problems.append(f"{where}: 'sources' must list at least one link that confirms it")
            sources = []
        value = _parse_value(str(kind), body["value"], where, problems)
        facts[str(name)] = Fact(str(name), str(kind), value, tuple(map(str, sources)))
    for required in ("deadline", "official_link"):
        if required not in facts:
            problems.append(f"{path}: required fact '{required}' is missing")
    if problems:
        raise KnowledgeError(problems)
    return Call(id=str(call_id), facts=facts, path=path)


def read_yaml(path: Path) -> Any:
    """Read a YAML file, turning I/O and syntax errors into a KnowledgeError naming the file."""
    try:
        with path.open(encoding="utf-8") as handle:
            # libyaml's loader, when PyYAML has it, parses ten times faster: `ask` starts sooner.
            return yaml.load(handle, Loader=_SAFE_LOADER)
    except FileNotFoundError:
        raise KnowledgeError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError([f"{path}: cannot read ({exc})"]) from None
    except yaml.YAMLError as exc:
        raise KnowledgeError([f"{path}: not valid YAML: {exc}"]) from None


def load_call(path: Path) -> Call:
    """Load and validate the call file."""
    return parse_call(read_yaml(path), path)
