"""Yes or no first: a closed question that quotes a figure, checked against its answer.

"Can we request 750 000?" and "Was the deadline at 17:00?" ask whether a figure holds; the
answer's own figures say so. When every figure of the question is among the answer's, the
reply starts with "Yes:"; when none is, with "No:"; otherwise (or when the question compares,
"more than 12?", or the answer already starts with a verdict) it is left as it is.

Figures are amounts (with their scale word: "500k", "6 milioni"), percentages, times of day and
dates (a day with a month name, read from Babel's month names); a year alone says nothing of a
figure ("the 2020 call"), nor does a date's year. The words (scales, comparisons, the verdicts
themselves) come from language.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

from bot.knowledge.facts import LANGUAGES
from bot.knowledge.lexicon import fold, tokens
from bot.knowledge.phrases import find

# After `fold`, whose digit groups are joined ("500 000", "6.000.000").
_NUMBER = r"\d+(?:[.,]\d+)?"
_TIME = re.compile(r"\b(\d{1,2})(?:[:.h](\d{2})|\s*([ap])\.?m\b\.?)")
_ORDINAL = r"(?:st|nd|rd|th|°|º)?"
FIRST_YEAR, LAST_YEAR = 1900, 2100


@cache
def _months() -> dict[str, int]:
    """Month names and abbreviations of both languages, folded -> month number."""
    from babel.dates import get_month_names

    names: dict[str, int] = {}
    for lang in LANGUAGES:
        for width in ("wide", "abbreviated"):
            for number, name in get_month_names(width, locale=lang).items():
                names[fold(name).rstrip(".")] = int(number)
    return names


class Verdicts:
    """Puts "yes" or "no" before an answer to a closed question that quotes a figure."""

    def __init__(
        self,
        words: Mapping[str, Mapping[str, str]],
        scales: Mapping[str, float],
        comparisons: frozenset[tuple[str, ...]],
        percents: frozenset[str] = frozenset(),
    ) -> None:
        # Per language: {"yes": "Sì", "no": "No"}.
        self.words = words
        self.scales = dict(scales)
        self.comparisons = comparisons
        # Words for "%" ("percent", "per cento"), folded.
        self.percents = frozenset(fold(word) for word in percents)
        self._starts = {fold(word) for table in words.values() for word in table.values() if word}
        scale = "|".join(sorted((re.escape(s) for s in self.scales), key=len, reverse=True))
        month = "|".join(sorted((re.escape(m) for m in _months()), key=len, reverse=True))
        units = "|".join(
            ["%", *(re.escape(word) for word in self.percents), *([scale] if scale else [])]
        )
        # A number inside a code or a name ("ABC-4x", "XYZ-2020-3-03") is no figure.
        # Nor is the number of an item of a list ("1) …", "2 - …").
        self._amount = re.compile(
            rf"(?<![\w\-:.])({_NUMBER})(?:\s*({units}))?(?![\w\-]|\s*\)|\s+-\s)"
        )
        self._date = re.compile(
            rf"\b(\d{{1,2}}){_ORDINAL}\s+(?:of\s+)?({month})\b"
            rf"|\b({month})\s+(\d{{1,2}}){_ORDINAL}\b"
        )

    def figures(self, text: str) -> set[str]:
        """The figures of `text`, normalized ("amount:500000", "percent:75", "time:17:00",
        "date:2-2"); years alone left out."""
        found: set[str] = set()
        folded = fold(text)
        for match in self._date.finditer(folded):
            day, month = (
                (match.group(1), match.group(2))
                if match.group(1)
                else (match.group(4), match.group(3))
            )
            found.add(f"date:{int(day)}-{_months()[month.rstrip('.')]}")
            folded = folded[: match.start()] + " " * len(match.group(0)) + folded[match.end() :]
        for match in _TIME.finditer(folded):
            hour = int(match.group(1)) % 12 + (12 if match.group(3) == "p" else 0)
            found.add(
                f"time:{hour if match.group(3) else int(match.group(1))}:{match.group(2) or '00'}"
            )
            folded = folded[: match.start()] + " " * len(match.group(0)) + folded[match.end() :]
        for match in self._amount.finditer(folded):
            digits, unit = match.group(1), match.group(2) or ""
            value = float(digits.replace(",", "."))
            if unit == "%" or unit in self.percents:
                found.add(f"percent:{value:g}")
                continue
            value *= self.scales.get(unit, 1.0)
            if not unit and value.is_integer() and FIRST_YEAR <= value <= LAST_YEAR:
                continue
            found.add(f"amount:{value:g}")
        return found

    def verdict(self, question: str, answer: str) -> str | None:
        """ "yes", "no" or None for a closed `question` and the `answer` it gets."""
        asked = self.figures(question)
        if not asked or self._compares(question):
            return None
        first = tokens(answer[:40])
        if first and first[0] in self._starts:
            return None
        stated = self.figures(answer)
        # "alle 17", "75 percent": a bare number is the same figure as the time or the rate
        # the answer states with it.
        stated |= {
            "amount:" + figure.split(":", 1)[1].removesuffix(":00")
            for figure in stated
            if figure.startswith("percent:") or figure.endswith(":00")
        }
        if asked <= stated:
            return "yes"
        if not asked & stated:
            return "no"
        return None

    def prefixed(self, question: str, answer: str, lang: str) -> str:
        """`answer`, with the verdict on `question` first when there is one."""
        found = self.verdict(question, answer)
        word = self.words.get(lang, {}).get(found or "")
        if not word:
            return answer
        # "No: each project …", but "Yes: EU funds …" keeps its capitals.
        start = answer[:1].lower() if answer[1:2].islower() else answer[:1]
        return f"{word}: {start}{answer[1:]}"

    def _compares(self, question: str) -> bool:
        return find(tokens(question), self.comparisons) >= 0


__all__ = ["Verdicts"]
