"""Locale formatting of money, numbers, percentages and dates (pure functions)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from babel.dates import format_date as _babel_date
from babel.numbers import format_decimal as _babel_decimal

# en_GB gives "2 February 2021"; en_US would give "February 2, 2021".
LOCALES = {"it": "it_IT", "en": "en_GB"}


def _locale(lang: str) -> str:
    return LOCALES.get(lang, LOCALES["en"])


def format_number(value: int | float | Decimal, lang: str) -> str:
    """6000000 -> '6.000.000' (it) or '6,000,000' (en)."""
    return str(_babel_decimal(value, locale=_locale(lang), group_separator=True))


def format_money(amount: int | float | Decimal, currency: str, lang: str) -> str:
    """6000000 EUR -> '6.000.000 EUR' (it) or 'EUR 6,000,000' (en)."""
    number = format_number(amount, lang)
    return f"{number} {currency}" if lang == "it" else f"{currency} {number}"


def format_percent(value: int | float | Decimal, lang: str) -> str:
    """75 -> '75%' (both languages use the sign after the number)."""
    return f"{format_number(value, lang)}%"


def format_day(value: date | datetime, lang: str) -> str:
    """A date -> '2 febbraio 2021' (it) or '2 February 2021' (en)."""
    day = value.date() if isinstance(value, datetime) else value
    return str(_babel_date(day, format="long", locale=_locale(lang)))


def format_time(value: datetime) -> str:
    """A datetime -> '17:00' (24-hour clock in both languages)."""
    return value.strftime("%H:%M")


def format_moment(value: datetime, lang: str) -> str:
    """A datetime -> '2 febbraio 2021, ore 17:00' (it) or '2 February 2021, 17:00' (en)."""
    joiner = ", ore " if lang == "it" else ", "
    return f"{format_day(value, lang)}{joiner}{format_time(value)}"
