"""bot.stats: counts by state, median time to answer, FAQ hit rate, fallback topics."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot import stats
from bot.storage import open_database


def test_counts_median_hits_topics():
    """The pure functions over rows."""
    rows = [
        {
            "status": "open",
            "created_at": "2026-01-01T10:00:00+00:00",
            "question": "Lump sum rules?",
        },
        {
            "status": "answered",
            "created_at": "2026-01-01T10:00:00+00:00",
            "answered_at": "2026-01-01T12:00:00+00:00",
            "question": "Are lump sums allowed for travel?",
        },
        {
            "status": "closed",
            "created_at": "2026-01-01T10:00:00+00:00",
            "answered_at": "2026-01-02T10:00:00+00:00",
            "question": "What about travel costs?",
        },
        {"status": "closed", "created_at": "x", "question": None, "erased_at": "y"},
    ]
    figures = stats.compute(rows, ["budget", None, "deadline", None])
    assert figures.counts == {"open": 1, "answered": 1, "closed": 2}
    assert figures.total == 4
    assert figures.median_answer == timedelta(hours=13)
    assert (figures.faq_total, figures.faq_hits, figures.hit_rate) == (4, 2, 0.5)
    assert figures.fallback_topics[:2] == (("lump", 2), ("sums", 1)) or figures.fallback_topics[
        0
    ] in (
        ("lump", 2),
        ("travel", 2),
    )
    assert dict(figures.fallback_topics)["travel"] == 2


def test_empty():
    """No data: zero counts, no median, no hit rate."""
    figures = stats.compute([], [])
    assert figures.counts == {"open": 0, "answered": 0, "closed": 0}
    assert figures.median_answer is None and figures.hit_rate is None
    assert figures.fallback_topics == ()


def test_stopwords_and_short_words_are_not_topics():
    """Words that carry no topic are skipped; each question counts a word once."""
    topics = stats.fallback_topics(["Vorrei sapere della scadenza scadenza", "the deadline please"])
    words = dict(topics)
    assert words == {"sapere": 1, "scadenza": 1, "deadline": 1}


def test_load_from_database(tmp_path: Path):
    """stats.load reads enquiries and faq_log."""
    db = open_database(tmp_path / "db.sqlite3")
    db["faq_log"].insert_all(
        [
            {"at": "2026-01-01T00:00:00+00:00", "lang": "en", "faq_id": "budget", "score": 0.9},
            {"at": "2026-01-01T00:00:00+00:00", "lang": "it", "faq_id": None, "score": 0.1},
        ]
    )
    figures = stats.load(db)
    assert figures.faq_total == 2 and figures.faq_hits == 1 and figures.total == 0
