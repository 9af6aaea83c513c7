"""Rendering FAQ answers: the call's status at a moment, the locale filters of the Jinja2
templates, the facts as template variables and the source link shown under an answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import jinja2

from bot.knowledge.facts import Call, Fact, Money
from bot.knowledge.formatting import (
    format_day,
    format_moment,
    format_money,
    format_number,
    format_percent,
    format_time,
)

if TYPE_CHECKING:
    from bot.knowledge.faq import FaqEntry

SOURCE_LABEL = {"it": "Fonte", "en": "Source"}


@dataclass(frozen=True)
class CallStatus:
    """Whether the call is open at a given moment, computed from its dates."""

    call_open: bool
    opening_ahead: bool
    days_left: int


def call_status(call: Call, now: datetime) -> CallStatus:
    """Open/closed and days left at `now` (aware); the deadline instant itself is closed."""
    deadline = call.deadline
    opening_fact = call.facts.get("opening")
    opening_ahead = False
    if opening_fact is not None and isinstance(opening_fact.value, date):
        opens = datetime.combine(opening_fact.value, datetime.min.time(), deadline.tzinfo)
        opening_ahead = now < opens
    is_open = now < deadline and not opening_ahead
    # Calendar days in the deadline's own timezone, so "1 day left" means tomorrow there.
    days_left = max(0, (deadline.date() - now.astimezone(deadline.tzinfo).date()).days)
    return CallStatus(call_open=is_open, opening_ahead=opening_ahead, days_left=days_left)


def _filters(lang: str) -> dict[str, Any]:
    def money(value: Money) -> str:
        return format_money(value.amount, value.currency, lang)

    def day(value: date | datetime) -> str:
        return format_day(value, lang)

    def moment(value: datetime) -> str:
        return format_moment(value, lang)

    def number(value: int | float) -> str:
        return format_number(value, lang)

    def percent(value: int | float) -> str:
        return format_percent(value, lang)

    def bullets(value: Sequence[str]) -> str:
        return "\n".join(f"• {item}" for item in value)

    def time(value: datetime) -> str:
        return format_time(value)

    return {
        "money": money,
        "date": day,
        "datetime": moment,
        "number": number,
        "percent": percent,
        "bullets": bullets,
        "time": time,
    }


def make_environment(lang: str) -> jinja2.Environment:
    """A plain-text Jinja2 environment with strict undefined and locale filters for `lang`."""
    # Answers are plain text: the channel adapters escape for their own markup.
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(_filters(lang))
    return env


def fact_context(call: Call, lang: str) -> dict[str, Any]:
    """The facts as template variables, per language."""
    return {name: fact.localized(lang) for name, fact in call.facts.items()}


def source_links(entry: FaqEntry, facts: Mapping[str, Fact]) -> list[str]:
    """The links an answer cites: the first source of each cited fact, without repeats."""
    links: list[str] = []
    for name in entry.sources:
        fact = facts[name]
        link = fact.value if fact.type == "url" else fact.sources[0]
        if link not in links:
            links.append(link)
    return links


def cited_links(entry: FaqEntry, call: Call, cite: str | None) -> list[str]:
    """The link shown under an answer: the fact named by the FAQ's `cite` (the official call
    page), else the entry's own sources. The other sources stay in the data as evidence."""
    if cite is not None and cite in call.facts:
        fact = call.facts[cite]
        return [fact.value if fact.type == "url" else fact.sources[0]]
    return source_links(entry, call.facts)


def render_answer(
    entry: FaqEntry,
    call: Call,
    lang: str,
    now: datetime,
    extra: Mapping[str, Any] | None = None,
    cite: str | None = None,
) -> str:
    """Render one answer in `lang` at `now`, followed by its source link."""
    status = call_status(call, now)
    context = fact_context(call, lang)
    context.update(
        lang=lang,
        call_open=status.call_open,
        opening_ahead=status.opening_ahead,
        days_left=status.days_left,
        call=call,
        secretariat_email="",
    )
    if extra:
        context.update(extra)
    body = entry.answers[lang].render(context).strip()
    links = cited_links(entry, call, cite)
    return f"{body}\n\n{SOURCE_LABEL[lang]}: {' ; '.join(links)}"
