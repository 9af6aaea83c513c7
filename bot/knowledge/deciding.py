"""Whether one question is answered: its best entry, and the answer-or-forward decision.

The ranking comes from match.py; this module decides what to do with it. A yes/no question
prefers a claim of the same topic nearly as close (its direct answer). The fitted model
(decision.py's features, `Tuning.accepts`) weighs the best confirmed entry; a point the
facts leave open is named when it ranks first, when the question names something only such
points know, or when it is close behind and the question says something the best entry does
not hold. understand.py reads whole messages with it.
"""

from __future__ import annotations

from dataclasses import replace

from bot.knowledge.analysis import OPEN_GROUP
from bot.knowledge.decision import features
from bot.knowledge.lexicon import CONCEPT_MARK
from bot.knowledge.lexicon import OTHER_PROGRAMMES as OTHER_GROUP
from bot.knowledge.match import Matcher, QueryTerms, Ranked

# How much closer a topic's general answer may be than one of its claims and still give way
# to it on a yes/no question.
CLAIM_PREFERENCE = 0.15
OTHER_PROGRAMMES = CONCEPT_MARK + OTHER_GROUP
# Best entry, margin over another topic, whether it answers, whether it is an open point.
Decision = tuple[Ranked | None, float, bool, bool]


class Decider:
    """Chooses the entry that would answer one question, and whether it does."""

    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher

    def choose(
        self, query: QueryTerms, closed: bool = False
    ) -> tuple[Ranked | None, float, list[Ranked]]:
        """The entry that would answer `query`, its margin over another topic, the ranking."""
        tuning = self.matcher.tuning
        best, margin, ranked = self.matcher.best(query)
        if closed and best is not None and best.id == best.group:
            # A yes/no question: a claim of the same topic nearly as close gives the direct
            # answer the topic's general text lacks.
            claim = next(
                (
                    r
                    for r in ranked[1:]
                    if r.group == best.group
                    and best.score - r.score < CLAIM_PREFERENCE
                    and r.score >= tuning.threshold
                ),
                None,
            )
            if claim is not None:
                best = replace(claim)
        return best, margin, ranked

    def decide(self, query: QueryTerms, closed: bool = False) -> Decision:
        """Best entry, margin, whether it answers, whether it is an unconfirmed point."""
        tuning = self.matcher.tuning
        best, margin, ranked = self.choose(query, closed)
        if best is None:
            return best, margin, False, False
        if tuning.has_decision and not best.group.startswith(OPEN_GROUP):
            # A fitted model weighs the score with what else the question says; an
            # unconfirmed point still needs the threshold to be named.
            if not tuning.accepts(features(self.matcher, query, best, margin, closed, ranked)):
                return best, margin, False, False
        elif best.score < tuning.threshold:
            return best, margin, False, False
        if OTHER_PROGRAMMES in query.concepts and not self.matcher.holds(
            best.index, OTHER_PROGRAMMES
        ):
            # Another programme is named, and this entry is not about other programmes: the
            # answer would be about this call, not the one asked about.
            return best, margin, False, False
        if best.group.startswith(OPEN_GROUP):
            return best, margin, False, True
        left_open = self.matcher.open_points(query, best.index)
        if left_open:
            # The question names something only points the facts leave open know ("the
            # coordinator", "duration"), and the answer would ignore it: the open point it
            # names, if it ranks, else nothing is answered.
            point = next((r for r in ranked if r.index in left_open), None)
            if point is not None:
                return point, margin, False, True
            return best, margin, False, False
        if margin < tuning.margin:
            # Too close to call: an unconfirmed point close behind wins (never a wrong
            # figure) when the question says something the best entry does not hold ("budget
            # per partner?"); otherwise nothing is answered.
            close = [
                r
                for r in ranked[1:]
                if r.group.startswith(OPEN_GROUP) and best.score - r.score < tuning.margin
            ]
            if close and not self._beyond(query, best):
                close = []
            if close:
                return close[0], margin, False, True
            if margin < tuning.answer_margin and not tuning.has_decision:
                return best, margin, False, False
        return best, margin, True, False

    def _beyond(self, query: QueryTerms, best: Ranked) -> bool:
        """Whether the question says something `best` does not hold (an informative term):
        only then may a point the facts leave open, close behind, be what it asks."""
        return not self.holds_all(query, best.index)

    def explains(self, question: str, lang: str, index: int) -> bool:
        """Whether entry `index` holds every word of `question` that says something."""
        return self.holds_all(self.matcher.query(question, lang), index)

    def holds_all(self, query: QueryTerms, index: int) -> bool:
        """Whether entry `index` holds every informative term of `query`."""
        stop = self.matcher.stop_terms
        return all(self.matcher.holds(index, term) for term in query.weights if term not in stop)
