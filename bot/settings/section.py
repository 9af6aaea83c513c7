"""What every section of the settings file shares: a frozen model that refuses unknown
keys, and the value types several sections use (time zones, languages)."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"must be an IANA time zone such as 'Europe/Rome' or 'Europe/Brussels', got {value!r}"
        ) from None
    return value


TimeZoneName = Annotated[str, BeforeValidator(_check_timezone)]
Language = Literal["it", "en"]


class Section(BaseModel):
    """A section of the settings file: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)
