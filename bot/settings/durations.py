"""Durations in the settings' own notation: '90s', '15m', '48h', '2d'."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HELP = "a duration such as '90s', '15m', '48h' or '2d'"
# Ten years: longer is a typo, and timedelta/scheduler arithmetic overflows far beyond it.
MAX_DURATION = timedelta(days=3650)


def parse_duration(value: object) -> timedelta:
    """Parse '90s', '15m', '48h' or '2d' into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            if seconds > MAX_DURATION.total_seconds():
                raise ValueError(
                    f"must be at most {format_duration(MAX_DURATION)} ({DURATION_HELP}), "
                    f"got {value!r}"
                )
            return timedelta(seconds=seconds)
    raise ValueError(f"must be {DURATION_HELP}, got {value!r}")


def format_duration(value: timedelta) -> str:
    """Render a timedelta back in the settings' own notation."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"must be longer than 0s ({DURATION_HELP})")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
