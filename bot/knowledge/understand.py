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
from dataclasses import dataclass

from bot.knowledge.lexicon import LanguageCues, tokens
from bot.knowledge.match import Matcher, Ranked

MAX_QUESTIONS = 3
MAX_PIECES = 8
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
        """`question` cut where a conjunction starts a new question ("… and when …")."""
        words = tokens(question)
        cuts = [
            at
            for at in range(1, len(words) - 1)
            if words[at] in self.conjunctions and _starts_with(words, self.question_cues, at + 1)
        ]
        if not cuts:
            return [question]
        parts, start = [], 0
        for cut in cuts:
            parts.append(" ".join(words[start:cut]))
            start = cut + 1
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

    def decide(self, text: str, lang: str) -> tuple[Ranked | None, float, bool, bool]:
        """Best entry, margin, whether it answers, whether it is an unconfirmed point."""
        tuning = self.matcher.tuning
        best, margin = self.matcher.best(text, lang)
        if best is None or best.score < tuning.threshold:
            return best, margin, False, False
        confirmed = not best.group.startswith("?")
        if not confirmed:
            return best, margin, False, True
        if margin < tuning.margin:
            # Too close to call: an unconfirmed point close behind wins (never a wrong
            # figure); otherwise nothing is answered.
            ranked = self.matcher.rank(text, lang)
            close = [
                r
                for r in ranked[1:]
                if r.group.startswith("?") and best.score - r.score < tuning.margin
            ]
            if close:
                return close[0], margin, False, True
            return best, margin, False, False
        return best, margin, True, False

    def read(self, text: str, lang: str) -> list[Piece]:
        """Every question of `text` with its decision."""
        pieces: list[Piece] = []
        for question, before, sentence in self.questions(text):
            best, margin, answered, unconfirmed = self.decide(question, lang)
            if not answered and not unconfirmed and before:
                # "Can we apply?" after "We are a university…": read with its context.
                joined = f"{before} {question}"
                best2, margin2, answered2, unconfirmed2 = self.decide(joined, lang)
                if answered2 or unconfirmed2:
                    best, margin, answered, unconfirmed = best2, margin2, answered2, unconfirmed2
            pieces.append(Piece(question, sentence, best, margin, answered, unconfirmed))
        return pieces
