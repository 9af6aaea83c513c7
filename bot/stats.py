"""Statistics for the secretariat (/stats): pure functions over rows, plus one loader.

* counts of enquiries by state;
* median time from an enquiry's creation to its answer;
* FAQ hit rate from `faq_log` (look-ups answered from the FAQ / all look-ups);
* the most frequent fallback topics: `faq_log` keeps no question text (no personal data),
  so the topics are the most frequent meaningful words of the questions that reached the
  secretariat (enquiries not erased).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlite_utils

from bot.storage import from_iso

STATES = ("open", "answered", "closed")
TOP_TOPICS = 5
MIN_WORD = 4
# Words that say nothing about a topic, in both languages.
_STOPWORDS_TEXT = """
    about after also answer because been before being call can could does doing dont each
    from have hello here into just like many more most much need only other our please
    question questions should some such than thank thanks that the their them then there
    these they this those very want what when where which while will with would your yours
    alla alle allo anche ancora avere come con cosa dalla dalle degli della delle dello
    domanda domande essere fare gli grazie hanno loro molto nella nelle nostra nostro ogni
    perché perche può puo quale quali quando quanto quella quelle quello questa queste
    questo salve siamo sono sulla sulle tutti tutto una uno vorrei buongiorno ciao
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


@dataclass(frozen=True)
class Stats:
    """What /stats reports."""

    counts: Mapping[str, int]
    median_answer: timedelta | None
    faq_total: int
    faq_hits: int
    fallback_topics: tuple[tuple[str, int], ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        """All enquiries."""
        return sum(self.counts.values())

    @property
    def hit_rate(self) -> float | None:
        """Share of FAQ look-ups answered from the FAQ, or None without look-ups."""
        return self.faq_hits / self.faq_total if self.faq_total else None


def count_by_state(statuses: Iterable[str]) -> dict[str, int]:
    """Enquiries per state; every state is present."""
    counts = dict.fromkeys(STATES, 0)
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


def median_time_to_answer(pairs: Iterable[tuple[str, str | None]]) -> timedelta | None:
    """Median of answered_at - created_at over (created_at, answered_at) ISO pairs."""
    seconds = [
        (from_iso(answered) - from_iso(created)).total_seconds()
        for created, answered in pairs
        if answered
    ]
    if not seconds:
        return None
    return timedelta(seconds=statistics.median(seconds))


def faq_hits(faq_ids: Iterable[str | None]) -> tuple[int, int]:
    """(look-ups, hits) from faq_log.faq_id values; None means the bot fell back."""
    total = hits = 0
    for faq_id in faq_ids:
        total += 1
        hits += faq_id is not None
    return total, hits


def fallback_topics(
    questions: Iterable[str | None], top: int = TOP_TOPICS
) -> list[tuple[str, int]]:
    """The most frequent meaningful words, each counted once per question."""
    counter: Counter[str] = Counter()
    for question in questions:
        if not question:
            continue
        words = {w.lower() for w in _WORD.findall(question)}
        counter.update(w for w in words if len(w) >= MIN_WORD and w not in STOPWORDS)
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:top]


def compute(rows: Iterable[Mapping[str, Any]], faq_ids: Iterable[str | None]) -> Stats:
    """Stats from enquiry rows (status, created_at, answered_at, question) and faq_log ids."""
    rows = list(rows)
    total, hits = faq_hits(faq_ids)
    return Stats(
        counts=count_by_state(row["status"] for row in rows),
        median_answer=median_time_to_answer(
            (row["created_at"], row.get("answered_at")) for row in rows
        ),
        faq_total=total,
        faq_hits=hits,
        fallback_topics=tuple(
            fallback_topics(row.get("question") for row in rows if not row.get("erased_at"))
        ),
    )


def load(db: sqlite_utils.Database) -> Stats:
    """Stats over the whole database."""
    cursor = db.execute(
        "SELECT status, created_at, answered_at, question, erased_at FROM enquiries"
    )
    columns = [c[0] for c in cursor.description]
    rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    faq_ids = (row[0] for row in db.execute("SELECT faq_id FROM faq_log").fetchall())
    return compute(rows, faq_ids)
