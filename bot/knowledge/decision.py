"""What the answer-or-forward model reads of a question and its best entry.

The model itself (its weights, and whether its log-odds say to answer) is `Tuning`, fitted by
bench/faq.py --fit --decision; this module only measures the question against the entry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.knowledge.analysis import OPEN_GROUP, QueryTerms, Ranked

if TYPE_CHECKING:
    from bot.knowledge.match import Matcher


def features(
    matcher: Matcher,
    query: QueryTerms,
    best: Ranked,
    margin: float,
    closed: bool,
    ranked: Sequence[Ranked] = (),
) -> tuple[float, ...]:
    """The features of analysis.DECISION_FEATURES, in order; `ranked`: the ranking `best`
    comes from, for the closest point the facts leave open."""
    known = sum(weight * weight for weight in query.weights.values())
    informative = {
        term: weight for term, weight in query.weights.items() if term not in matcher.stop_terms
    }
    unexplained = sum(
        weight * weight
        for term, weight in informative.items()
        if not matcher.holds(best.index, term)
    )
    information = sum(weight * weight for weight in informative.values())
    point = max(
        (r for r in ranked if r.group.startswith(OPEN_GROUP)),
        key=lambda r: r.score,
        default=None,
    )
    open_score = point.score if point is not None else 0.0
    # What the closest open point knows of the question and the entry does not.
    beyond = (
        sum(
            weight * weight
            for term, weight in informative.items()
            if matcher.holds(point.index, term) and not matcher.holds(best.index, term)
        )
        if point is not None
        else 0.0
    )
    return (
        best.score,
        margin,
        query.unknown / (known + query.unknown) if known + query.unknown else 0.0,
        math.log1p(query.words),
        unexplained / known if known else 0.0,
        float(closed),
        float(best.id != best.group),
        math.sqrt(information),
        best.score - open_score,
        beyond / known if known else 0.0,
    )
