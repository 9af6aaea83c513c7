"""Read a whole message: split it into its questions, match each, decide what to answer.

A message is cut into sentences; a sentence asks when it has a question mark or starts with
(or contains) a question cue of language.yaml. Greetings, context ("we are a cluster of 40
SMEs…"), thanks and signatures ask nothing and are left out, so they cannot dilute the
match. In a chatty sentence the part after a focus cue ("I would like to know…") is the
question; a sentence joining two questions with a conjunction ("… and when is the
deadline?") is cut there. A question that names nothing the knowledge base knows is read
again with the sentence before it, where its subject usually is.

Each question is matched on its own. It is answered when its best entry clears the fitted
threshold by the fitted margin over the best entry of another topic; an entry on a point the
facts do not confirm gives its tailored "not confirmed" text; anything else is unanswered and
goes, alone, to the form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from bot.knowledge.lexicon import CONCEPT_MARK, LanguageCues, tokens
from bot.knowledge.lexicon import OTHER_PROGRAMMES as OTHER_GROUP
from bot.knowledge.match import Matcher, QueryTerms, Ranked

MAX_QUESTIONS = 3
MAX_PIECES = 8
UNCONFIRMED = "?"
OTHER_PROGRAMMES = CONCEPT_MARK + OTHER_GROUP
# Share of a question's known weight an answer must leave out before the rest is read as a
# second question.
RESIDUAL_SHARE = 0.35
# How much closer a topic's general answer may be than one of its claims and still give way
# to it on a yes/no question.
CLAIM_PREFERENCE = 0.15
CLOSED_MIN_WORDS = 4
# A conjunction starts a new question when a question cue follows within this many words
# ("and with which criteria").
CUE_WINDOW = 2
_SENTENCE_RE = re.compile(r"[^.!?;:\n]*[.!?;:\n]+|[^.!?;:\n]+$")


@dataclass(frozen=True)
class Piece:
    """One question of a message and how it matched."""

    text: str
    sentence: str
    best: Ranked | None
    margin: float
    answered: bool
    unconfirmed: bool


def _starts_with(words: list[str], phrases: frozenset[tuple[str, ...]], at: int = 0) -> bool:
    return any(tuple(words[at : at + len(phrase)]) == phrase for phrase in phrases)


def _find(words: list[str], phrases: frozenset[tuple[str, ...]]) -> int:
    """End position of the last occurrence of any phrase in `words`, or -1."""
    found = -1
    for at in range(len(words)):
        for phrase in phrases:
            if tuple(words[at : at + len(phrase)]) == phrase:
                found = max(found, at + len(phrase))
    return found


def _comma_positions(text: str) -> set[int]:
    """Word positions that follow a comma in `text`."""
    positions: set[int] = set()
    count = 0
    for part in text.split(","):
        count += len(tokens(part))
        positions.add(count)
    return positions


def sentences(text: str) -> list[str]:
    """The sentences of `text`, with their closing punctuation."""
    return [part.strip() for part in _SENTENCE_RE.findall(text) if tokens(part)]


class Reader:
    """Splits messages into questions and matches each against the knowledge base."""

    def __init__(self, matcher: Matcher, cues: LanguageCues) -> None:
        self.matcher = matcher
        self.question_cues = cues.all_question()
        self.focus_cues = cues.all_focus()
        self.conjunctions = cues.all_conjunctions()
        self.open_cues = cues.all_open()

    def is_question(self, sentence: str) -> bool:
        words = tokens(sentence)
        return (
            "?" in sentence
            or _starts_with(words, self.question_cues)
            or _find(words, self.focus_cues) >= 0
        )

    def _focus(self, sentence: str) -> str:
        """The part of a chatty sentence after its last focus cue ("vorrei sapere …")."""
        words = tokens(sentence)
        end = _find(words, self.focus_cues)
        if 0 < end < len(words):
            return " ".join(words[end:])
        return sentence

    def _halves(self, question: str) -> list[str]:
        """`question` cut where a conjunction or a comma starts a new question ("… and when
        …", "… and with which criteria …", "…, is there …")."""
        words = tokens(question)
        commas = _comma_positions(question)
        # (end of one part, start of the next): a conjunction is dropped, a comma is not a word.
        cuts: list[tuple[int, int]] = []
        for at in range(1, len(words) - 1):
            if words[at] in self.conjunctions and any(
                words[at + skip] not in self.conjunctions
                and _starts_with(words, self.question_cues, at + skip)
                for skip in range(1, min(CUE_WINDOW, len(words) - at - 1) + 1)
            ):
                cuts.append((at, at + 1))
            elif at in commas and _starts_with(words, self.question_cues, at):
                cuts.append((at, at))
        if not cuts:
            return [question]
        parts, start = [], 0
        for end, next_start in cuts:
            if end <= start:
                start = max(start, next_start)
                continue
            parts.append(" ".join(words[start:end]))
            start = next_start
        parts.append(" ".join(words[start:]))
        return [part for part in parts if part]

    def questions(self, text: str) -> list[tuple[str, str, str]]:
        """(question, the sentence before it, its whole sentence) triples; the whole text
        when nothing asks."""
        found = sentences(text)
        asked: list[tuple[str, str, str]] = []
        previous = ""
        for sentence in found:
            if self.is_question(sentence):
                for half in self._halves(self._focus(sentence)):
                    asked.append((half, previous, sentence))
            previous = sentence
        if not asked:
            return [(text, "", text.strip())]
        return asked[:MAX_PIECES]

    def is_closed(self, question: str) -> bool:
        """A yes/no question: no question word asking for information ("what", "quanto")."""
        words = tokens(question)
        # "Funding rate?" names a topic rather than asking yes or no: too short to be closed.
        return len(words) >= CLOSED_MIN_WORDS and not any(
            _starts_with(words, self.open_cues, at) for at in range(len(words))
        )

    def decide(
        self, query: QueryTerms, closed: bool = False
    ) -> tuple[Ranked | None, float, bool, bool]:
        """Best entry, margin, whether it answers, whether it is an unconfirmed point."""
        tuning = self.matcher.tuning
        best, margin, ranked = self.matcher.best(query)
        if closed and best is not None and best.id == best.group:
            # A yes/no question: a claim of the same topic nearly as close gives the direct
            # answer the topic's general text lacks.
            claim = next(
                (
                    r
                    for r in ranked[1:]
                    if r.group == best.group and best.score - r.score < CLAIM_PREFERENCE
                ),
                None,
            )
            if claim is not None:
                best = replace(claim)
        if best is None or best.score < tuning.threshold:
            return best, margin, False, False
        if OTHER_PROGRAMMES in query.concepts and not self.matcher.holds(
            best.index, OTHER_PROGRAMMES
        ):
            # Another programme is named, and this entry is not about other programmes: the
            # answer would be about this call, not the one asked about.
            return best, margin, False, False
        if best.group.startswith(UNCONFIRMED):
            return best, margin, False, True
        if margin < tuning.margin:
            # Too close to call: an unconfirmed point close behind wins (never a wrong
            # figure); otherwise nothing is answered.
            close = [
                r
                for r in ranked[1:]
                if r.group.startswith(UNCONFIRMED) and best.score - r.score < tuning.margin
            ]
            if close:
                return close[0], margin, False, True
            if margin < tuning.answer_margin:
                return best, margin, False, False
        return best, margin, True, False

    def _close(self, query: QueryTerms, entry_id: str, score: float) -> bool:
        ranked = self.matcher.rank_query(query)
        return any(
            r.id == entry_id and score - r.score < 2 * self.matcher.tuning.margin for r in ranked
        )

    def read(self, text: str, lang: str) -> list[Piece]:
        """Every question of `text` with its decision, in message order."""
        pieces: list[Piece] = []
        asked = [
            (question, before, sentence, self.matcher.query(question, lang))
            for question, before, sentence in self.questions(text)
        ]
        if any(self.matcher.asks_anything(query) for *_, query in asked):
            # "Could you kindly and briefly tell me the budget?": a part made of function
            # words only asks nothing; the other parts carry the question.
            asked = [item for item in asked if self.matcher.asks_anything(item[3])]
        for question, before, sentence, query in asked:
            closed = self.is_closed(question)
            best, margin, answered, unconfirmed = self.decide(query, closed)
            last = pieces[-1] if pieces else None
            if (
                answered
                and best is not None
                and last is not None
                and last.sentence == sentence
                and last.unconfirmed
                and last.best is not None
                and self._close(query, last.best.id, best.score)
            ):
                # "… how many partners, and must they be from different countries?": a second
                # half nearly as close to the point the first half asked stays with it.
                continue
            if not answered and not unconfirmed and before:
                # "Can we apply?" after "We are a university…": read with its context.
                joined = self.matcher.query(f"{before} {question}", lang)
                decided = self.decide(joined, closed)
                if decided[2] or decided[3]:
                    query = joined
                    best, margin, answered, unconfirmed = decided
            pieces.append(Piece(question, sentence, best, margin, answered, unconfirmed))
            if best is not None and answered:
                # "scadenza e budget?": what the first entry leaves out may be a second question.
                rest = self.matcher.residual(query, best.index)
                known = sum(w * w for w in query.weights.values())
                left = sum(w * w for w in rest.weights.values())
                if known and left / known >= RESIDUAL_SHARE:
                    extra = self.decide(rest)
                    if extra[0] is not None and extra[2] and extra[0].group != best.group:
                        pieces.append(Piece(question, sentence, extra[0], extra[1], True, False))
        return pieces
