"""Find the questions of a message: sentences, the ones that ask, and the questions in each.

A message is cut into sentences. A period, colon or semicolon ends one only when a space or
the end follows ("500.000", "17:00", "e.g." and "example.org" stay whole); a question or
exclamation mark and a line break always do. A sentence that ends with a colon before another
announces the questions and asks nothing ("Our question is simple: …"). A sentence asks when it
has a question mark, starts with a question cue of language.yaml, or holds a focus cue ("I
would like to know"); in a message that uses question marks, a sentence without one asks only
through a focus cue or an open question word ("what", "quando"), so "Devo andarci per lavoro."
beside a real question is context. Greetings, thanks and signatures ask nothing and are left
out. In a chatty sentence the part after a focus cue is the question; a sentence joining two
questions with a conjunction or a comma ("… and when is the deadline?", "…, a quanto arriva …")
is cut there. A message of several lines that nothing marks as a question is a list: each line asks.
Chat and dialect spellings of question words ("ki", "qnt") count as the words they stand for.
A question whose words before its question word only dilute it ("Per pura curiosità (e un po'
d'ansia) quanti progetti …") can be read from that word on (`from_question_word`).
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.knowledge.cues import LanguageCues, in_every_language
from bot.knowledge.lexicon import surface_words, tokens
from bot.knowledge.phrases import find, find_loosely, starts_with

MAX_PIECES = 8
# A conjunction or a comma starts a new question when a question cue follows within this
# many words ("and with which criteria", ", a quanto arriva").
CUE_WINDOW = 2
# Always the end of a sentence; these only before a space or the end of the text.
_HARD_ENDS = frozenset("?!\n")
_SOFT_ENDS = frozenset(".;:")
# Fewest words besides fillers that make a closing sentence a request, not thanks or a
# signature ("Grazie mille!", "Best, Tom").
CLOSING_WORDS = 4


def comma_positions(text: str) -> set[int]:
    """Word positions that follow a comma in `text`."""
    positions: set[int] = set()
    count = 0
    for part in text.split(","):
        count += len(tokens(part))
        positions.add(count)
    return positions


def sentences(text: str) -> list[str]:
    """The sentences of `text`, with their closing punctuation."""
    found: list[str] = []
    start = 0
    size = len(text)
    for at, char in enumerate(text):
        end = char in _HARD_ENDS or (
            char in _SOFT_ENDS and (at + 1 == size or text[at + 1].isspace())
        )
        if end:
            # Closing marks run on ("?!", "...").
            if at + 1 < size and text[at + 1] in "?!.;:":
                continue
            found.append(text[start : at + 1])
            start = at + 1
    found.append(text[start:])
    return [part.strip() for part in found if tokens(part)]


class Splitter:
    """Cuts messages into their questions with the generic cues of language.yaml."""

    def __init__(
        self, cues: LanguageCues, informal: Mapping[str, tuple[str, ...]] | None = None
    ) -> None:
        self.question_cues = in_every_language(cues.question)
        # Chat and dialect spellings of either language ("ki", "qnt"), read as the words they
        # stand for when looking for cues (each spelling belongs to one language only).
        self.informal = dict(informal or {})
        self.focus_cues = in_every_language(cues.focus)
        self.conjunctions = in_every_language(cues.conjunctions)
        self.open_cues = in_every_language(cues.open)
        self.reason_cues = in_every_language(cues.reason)
        self.choice_cues = in_every_language(cues.choice)
        self.yes_no_tails = in_every_language(cues.yes_no_tails)
        self.filler = in_every_language(cues.filler)

    def read_words(self, text: str) -> list[str]:
        """The words of `text` with informal spellings read as the words they stand for."""
        words: list[str] = []
        for word in tokens(text):
            words.extend(self.informal.get(word, (word,)))
        return words

    def is_question(self, sentence: str, marked: bool = False) -> bool:
        """Whether `sentence` asks; `marked`: the message uses question marks elsewhere."""
        words = self.read_words(sentence)
        if "?" in sentence or find_loosely(words, self.focus_cues) >= 0:
            return True
        cues = self.open_cues if marked else self.question_cues
        return starts_with(words, cues)

    def focus(self, sentence: str) -> str:
        """The part of a chatty sentence after its first focus cue ("vorrei sapere …"); a
        later one is usually the purpose ("…, per capire se …")."""
        return self.focused(sentence)[1]

    def focused(self, sentence: str) -> tuple[str, str]:
        """A chatty sentence cut at its first focus cue: what it says before the cue (the
        question's closest context: "… something called X and now I'm curious, what is it?")
        and what it asks after it; ("", sentence) without a cue."""
        words = tokens(sentence)
        end = find_loosely(words, self.focus_cues, first=True)
        if 0 < end < len(words):
            # Its commas stay: they may start the reason for asking (see `halves`).
            surface = surface_words(sentence)
            commas = comma_positions(sentence)
            rest = surface[end]
            for at in range(end + 1, len(surface)):
                rest += ("," if at in commas else "") + " " + surface[at]
            # Where the cue starts: the last start from which a cue still ends at `end`.
            start = max(
                at for at in range(end) if find_loosely(words[at:end], self.focus_cues) == end - at
            )
            return " ".join(surface[:start]), rest
        return "", sentence

    def conjunction_at(self, words: list[str], surface: list[str], at: int) -> bool:
        """Whether word `at` is a conjunction as written ("e", not the verb "è")."""
        return words[at] in self.conjunctions and surface[at] == words[at]

    def _cue_follows(self, words: list[str], at: int) -> bool:
        """Whether a question cue starts within CUE_WINDOW words after position `at`."""
        return any(
            words[at + skip] not in self.conjunctions
            and starts_with(words, self.question_cues, at + skip)
            for skip in range(1, min(CUE_WINDOW, len(words) - at - 1) + 1)
        )

    def _only_question_words(self, words: list[str]) -> bool:
        """Whether `words` are question words and nothing else ("where", "quando e dove")."""
        return bool(words) and all(
            starts_with(words, self.open_cues, at) for at in range(len(words))
        )

    def _asks_for_information(self, words: list[str]) -> bool:
        """Whether `words` hold a question word asking for information ("fino a quando")."""
        return any(starts_with(words, self.open_cues, at) for at in range(len(words)))

    def halves(self, question: str, marked: bool = False) -> tuple[str, list[str]]:
        """`question` cut where a conjunction or a comma starts a new question ("… and when
        …", "… and with which criteria …", "…, is there …", "…, a quanto …"): the context
        before the first question, and the questions. `marked`: the sentence ends with a
        question mark, so a statement before its first comma cut is context ("We are a
        cluster from Kosovo, can we …")."""
        words = tokens(question)
        surface = surface_words(question)
        commas = comma_positions(question)
        # (end of one part, start of the next): a conjunction is dropped, a comma is not a word.
        cuts: list[tuple[int, int]] = []
        for at in sorted(commas):
            if 0 < at < len(words) and starts_with(words, self.reason_cues, at):
                # "…, since one of our partners is …": the reason for asking, not a question.
                words, surface = words[:at], surface[:at]
                break
        start = 0
        for at in range(1, len(words) - 1):
            if (
                self.conjunction_at(words, surface, at)
                and self._cue_follows(words, at)
                and not self._only_question_words(words[start:at])
            ):
                # "where and how do we …" is one question with two question words.
                cuts.append((at, at + 1))
                start = at + 1
            elif at in commas and (
                starts_with(words, self.question_cues, at) or self._cue_follows(words, at - 1)
            ):
                start = at
                if (
                    marked
                    and not cuts
                    and not starts_with(words, self.question_cues)
                    and not self._asks_for_information(words[:at])
                ):
                    # "We are a cluster from Kosovo, can we …": a statement before the comma
                    # is context; "Oh ma fino a quando …, che …" already asks.
                    cuts.append((0, at))
                else:
                    cuts.append((at, at))
        if not cuts:
            return "", [" ".join(surface) if len(surface) < len(tokens(question)) else question]
        context = " ".join(surface[: cuts[0][1]]) if cuts[0][0] == 0 else ""
        parts, start = [], 0
        for end, next_start in cuts:
            if end <= start:
                start = max(start, next_start)
                continue
            parts.append(" ".join(surface[start:end]))
            start = next_start
        parts.append(" ".join(surface[start:]))
        return context, [part for part in parts if part]

    def questions(self, text: str) -> list[tuple[str, str, str]]:
        """(question, the sentence before it, its whole sentence) triples; the whole text
        when nothing asks."""
        found = sentences(text)
        marked = self._marked(text, found)
        asked: list[tuple[str, str, str]] = []
        previous = ""
        for at, sentence in enumerate(found):
            if sentence.endswith(":") and at + 1 < len(found):
                # "Our question is simple: …", "Due dubbi sul finanziamento: …": it announces
                # the questions that follow and asks nothing itself.
                previous = sentence
                continue
            if asked and all(word.isdigit() for word in tokens(sentence)):
                # "… 2 years? 3?": a number alone offers another value for the question
                # before it; it asks nothing new.
                continue
            if self.is_question(sentence, marked):
                lead, focused = self.focused(sentence)
                context, parts = self.halves(focused, sentence.endswith("?"))
                if not self._says_something(lead):
                    # "Inoltre mi servirebbe sapere …": too little before the cue to be context.
                    lead = ""
                for half in parts:
                    asked.append((half, context or lead or previous, sentence))
            previous = sentence
        if not asked and self.is_list(text):
            # Nothing marks a question, on several lines ("deadline date & time\n* total
            # budget"): each line may ask.
            return [(sentence, "", sentence) for sentence in found][:MAX_PIECES]
        request = self._closing_request(found) if not asked else -1
        if request > 0:
            # Nothing marks a question in a paragraph ("We are a cluster … I need the total
            # budget and the funding rate. Thanks!"): like a letter, it asks at its end,
            # before the thanks and the signature.
            last = found[request]
            halves = self.halves(self.focus(last))[1]
            return [(half, found[request - 1], last) for half in halves][:MAX_PIECES]
        if not asked:
            # Nothing marks a question ("budget and deadline"): the whole text asks.
            halves = self.halves(self.focus(text))[1]
            return [(half, "", text.strip()) for half in halves][:MAX_PIECES]
        return asked[:MAX_PIECES]

    def _closing_request(self, found: list[str]) -> int:
        """Index of the last sentence of `found` that says something (CLOSING_WORDS words or
        more besides fillers), -1 when none does."""
        for at in range(len(found) - 1, -1, -1):
            if self._says_something(found[at]):
                return at
        return -1

    def _says_something(self, text: str) -> bool:
        """Whether `text` has CLOSING_WORDS words or more besides fillers."""
        return len([word for word in tokens(text) if word not in self.filler]) >= CLOSING_WORDS

    def _marked(self, text: str, found: list[str]) -> bool:
        """Whether `text` marks its questions, with a question mark or a focus cue ("volevo
        sapere …"): it then asks only there or with an open question word, and "Sono Paolo,
        project manager …" beside it is context, though "sono" can start a question."""
        return "?" in text or any(
            find_loosely(tokens(part), self.focus_cues) >= 0 for part in found
        )

    def context(self, text: str, sentence: str) -> str:
        """Every sentence of `text` that asks nothing between the last one that asks and
        `sentence` ("Our cluster has partners in Kosovo. We want to be sure they can join.
        Can they?")."""
        found = sentences(text)
        marked = self._marked(text, found)
        before: list[str] = []
        for part in found:
            if part == sentence:
                break
            before = [] if self.is_question(part, marked) else [*before, part]
        return " ".join(before)

    def is_list(self, text: str) -> bool:
        """Whether `text` asks in a list: several lines, none marked as a question."""
        found = sentences(text)
        return (
            "\n" in text.strip()
            and len(found) > 1
            and "?" not in text
            and not any(self.is_question(sentence) for sentence in found)
        )

    def from_question_word(self, question: str) -> str:
        """`question` from its first question word asking for information, when one follows
        other words ("Per pura curiosità (e un po' d'ansia) quanti progetti …"), else ""."""
        words = tokens(question)
        for at in range(1, len(words) - 1):
            if starts_with(words, self.open_cues, at):
                return " ".join(surface_words(question)[at:])
        return ""

    def is_closed(self, question: str, min_words: int) -> bool:
        """A yes/no question: no question word asking for information ("what", "quanto")."""
        words = self.read_words(question)
        if find(words, self.choice_cues) >= 0 and find(words, self.yes_no_tails) < 0:
            # "Can we apply alone or must we find a cluster?" asks which, not yes or no.
            return False
        # "Funding rate?" names a topic rather than asking yes or no: too short to be closed.
        return len(words) >= min_words and not self._asks_for_information(words)
