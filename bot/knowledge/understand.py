"""Read a whole message: split it into its questions, match each, decide what to answer.

split.py finds the questions (greetings, context, thanks and signatures ask nothing and are
left out, so they cannot dilute the match). A question that names nothing the knowledge base
knows is read again with the sentence before it, where its subject usually is.

Each question is matched on its own. It is answered when its best entry clears the fitted
threshold by the fitted margin over the best entry of another topic; an entry on a point the
facts do not confirm gives its tailored "not confirmed" text; anything else is unanswered and
goes, alone, to the form.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot.knowledge.cues import LanguageCues
from bot.knowledge.deciding import Decider, Decision
from bot.knowledge.lexicon import CONCEPT_MARK, surface_words, tokens
from bot.knowledge.match import Matcher, QueryTerms, Ranked
from bot.knowledge.split import Splitter, comma_positions

# Share of a question's known weight an answer must leave out before the rest is read as a
# second question.
RESIDUAL_SHARE = 0.35
CLOSED_MIN_WORDS = 4
# Conjunctions of one question tried as the join of two subjects.
MAX_CONJUNCTIONS_TRIED = 1
# How far down the question's own ranking the point its context leads to must be.
NEAR_RANKS = 5
# A list of subjects asked at once: at most this many, each of at most this many words.
MAX_LISTED = 4
MAX_LISTED_WORDS = 6
# Most words of its own (besides fillers and function words) a question may have and still
# only elaborate the open point asked just before it.
FOLLOW_UP_WORDS = 1


@dataclass(frozen=True)
class Piece:
    """One question of a message and how it matched."""

    text: str
    sentence: str
    best: Ranked | None
    margin: float
    answered: bool
    unconfirmed: bool


class Reader(Decider):
    """Splits messages into questions and matches each against the knowledge base."""

    def __init__(self, matcher: Matcher, cues: LanguageCues) -> None:
        super().__init__(matcher)
        informal = {
            word: meaning
            for spellings in matcher.spellings.informal.values()
            for word, meaning in spellings.items()
        }
        self.splitter = Splitter(cues, informal)

    def questions(self, text: str) -> list[tuple[str, str, str]]:
        """(question, the sentence before it, its whole sentence) triples (see split.py)."""
        return self.splitter.questions(text)

    def is_closed(self, question: str) -> bool:
        """A yes/no question: no question word asking for information ("what", "quanto")."""
        return self.splitter.is_closed(question, CLOSED_MIN_WORDS)

    def _listed(self, question: str, lang: str) -> list[str]:
        """`question` as a list of short subjects, cut at its commas and conjunctions
        ("paesi ammessi, importo max e tasso di cofinanziamento?", "funding rate, number of
        grants and deadline?"), when there are three or more, each one alone is answered or
        names a point left open, and two or more topics are answered; else nothing."""
        words = tokens(question)
        surface = surface_words(question)
        if len(words) != len(surface):
            return []
        commas = {at for at in comma_positions(question) if 0 < at < len(words)}
        if not commas:
            return []
        joins = {
            at
            for at in range(1, len(words) - 1)
            if self.splitter.conjunction_at(words, surface, at)
        }
        parts, start = [], 0
        for at in sorted(commas | joins):
            parts.append(" ".join(surface[start:at]))
            start = at + 1 if at in joins else at
        parts.append(" ".join(surface[start:]))
        parts = [part for part in parts if part]
        # Two parts are as often a question and its afterthought ("How long is the project,
        # maximum?", "wee question, whit's this thing aboot?") as two subjects.
        if not 3 <= len(parts) <= MAX_LISTED or any(
            len(tokens(part)) > MAX_LISTED_WORDS for part in parts
        ):
            return []
        decided = [
            self.decide(self.matcher.query(part, lang), self.is_closed(part)) for part in parts
        ]
        if not all(d[0] is not None and (d[2] or d[3]) for d in decided):
            return []
        if len({d[0].group for d in decided if d[0] is not None and d[2]}) < 2:
            # "personale, missioni, spese generali?" lists one point, not several topics.
            return []
        return parts

    def coordinated(self, question: str, lang: str) -> list[str]:
        """`question` cut at a conjunction joining two subjects that are answered by
        different topics, each closer than the whole ("budget and deadline?", "the general
        and the specific objective"), else the question whole."""
        listed = self._listed(question, lang)
        if listed:
            return listed
        whole = self.matcher.best(self.matcher.query(question, lang))[0]
        floor = whole.score if whole is not None else 0.0
        words = tokens(question)
        surface = surface_words(question)
        positions = [
            at
            for at in range(1, len(words) - 1)
            if self.splitter.conjunction_at(words, surface, at)
        ]
        for at in positions[:MAX_CONJUNCTIONS_TRIED]:
            left, right = " ".join(surface[:at]), " ".join(surface[at + 1 :])
            first = self.decide(self.matcher.query(left, lang), self.is_closed(left))
            if not first[2] or first[0] is None or first[0].score <= floor:
                continue
            second = self.decide(self.matcher.query(right, lang), self.is_closed(right))
            if (
                second[2]
                and second[0] is not None
                and second[0].score > floor
                and second[0].group != first[0].group
            ):
                return [left, right]
        return [question]

    def _near(self, query: QueryTerms, entry: Ranked | None) -> bool:
        """Whether `entry` is among the entries `query` alone ranks best (or `query` names
        nothing, so any entry may be what it asks about)."""
        if entry is None:
            return False
        if not self.matcher.names_anything(query):
            return True
        return any(r.group == entry.group for r in self.matcher.rank_query(query, NEAR_RANKS))

    def _names_for(
        self, joined: QueryTerms, alone: QueryTerms, entry: Ranked, other: Ranked
    ) -> bool:
        """Whether the statement before a question names a lexicon concept (a participating
        country, a kind of organisation) that `entry` holds and `other` does not: "We are a
        cluster in Turkey, can we apply?" asks about the country, not who may apply."""
        return any(
            term.startswith(CONCEPT_MARK)
            and term not in alone.weights
            and self.matcher.holds(entry.index, term)
            and not self.matcher.holds(other.index, term)
            for term in joined.weights
        )

    def _follows_up(self, question: str, lang: str, last: Piece) -> bool:
        """Whether `question` only elaborates the open point `last` asked just before it
        ("… a pre-financing, and in what percentage?", "… how the grant is split? Half
        each?"): at most FOLLOW_UP_WORDS words of its own, all of them words that point
        knows. "… and what is the deadline?" names another subject and stays a question."""
        if last.best is None:
            return False
        own = [
            word
            for word in tokens(question)
            if word not in self.matcher.filler and word not in self.matcher.stopwords
        ]
        if len(own) > FOLLOW_UP_WORDS:
            return False
        return self.explains(question, lang, last.best.index)

    def settles(self, piece: Piece, lang: str) -> bool:
        """Whether an answered closed question is wholly about its entry, so the figures of
        the entry's answer settle it ("Does the 75 % rate apply to in-kind too?" is not)."""
        return (
            piece.answered
            and piece.best is not None
            and self.is_closed(piece.text)
            and self.explains(piece.text, lang, piece.best.index)
        )

    def _close(self, query: QueryTerms, entry_id: str, score: float) -> bool:
        ranked = self.matcher.rank_query(query)
        return any(
            r.id == entry_id and score - r.score < 2 * self.matcher.tuning.margin for r in ranked
        )

    def _in_context(
        self,
        question: str,
        previous: tuple[str, bool],
        where: tuple[str, str],
        lang: str,
        query: QueryTerms,
        alone: Decision,
    ) -> tuple[QueryTerms, Decision]:
        """`question` read with the sentence before it (`previous`: it, and whether it asks
        too) and, if still unanswered, with all the context since the last question of its
        message (`where`: the message and the question's sentence): the reading and decision
        that win over `alone`, the question's own."""
        closed = self.is_closed(question)
        best, margin, answered, unconfirmed = alone
        statement, asks = previous
        if unconfirmed and best is not None and statement and not asks:
            # "We work with clusters in Albania. Can they join our partnership?": a point
            # the facts leave open in general may be answered for the subject the
            # statement before it names (any subject, when the question alone is unsure
            # even of which open point it asks about).
            joined = self.matcher.query(f"{statement} {question}", lang)
            decided = self.decide(joined, closed)
            if (
                decided[2]
                and decided[0] is not None
                and decided[0].score >= best.score
                and (margin < self.matcher.tuning.margin or self._near(query, decided[0]))
            ):
                return joined, decided
        if not unconfirmed and statement and (not answered or not asks):
            # "Can we apply?" after "We are a university…": read with its context, which
            # wins when the question alone says nothing sure, or when a statement (not
            # another question) makes another topic closer than the question alone
            # ("We are from Ukraine, can we …?").
            joined = self.matcher.query(f"{statement} {question}", lang)
            decided = self.decide(joined, closed)
            if decided[3] and not decided[2] and not self._near(query, decided[0]):
                # The statement alone made an open point closest ("The partners are ready
                # to sign. Can we still send it in?"): the question asked something else.
                decided = (None, 0.0, False, False)
            if (
                answered
                and best is not None
                and decided[3]
                and decided[0] is not None
                and decided[0].index in self.matcher.open_points(joined, best.index)
            ):
                # "… vouchers as support to third parties. What percentage is financed?":
                # the statement names what only a point the facts leave open knows, and
                # the question asks about that point; the answer would ignore it.
                return joined, decided
            if (decided[2] or decided[3]) and (
                not answered
                or (
                    decided[2]
                    and best is not None
                    and decided[0] is not None
                    and decided[0].group != best.group
                    and (
                        decided[0].score > best.score
                        or self._names_for(joined, query, decided[0], best)
                    )
                )
            ):
                query, (best, margin, answered, unconfirmed) = joined, decided
        context = self.splitter.context(*where) if not answered and not unconfirmed else ""
        if context and context != statement:
            # "Can they?" and the sentence before it may both name too little: the
            # subject is further back, in the context since the last question.
            joined = self.matcher.query(f"{context} {question}", lang)
            decided = self.decide(joined, closed)
            if decided[2] or decided[3]:
                return joined, decided
        return query, (best, margin, answered, unconfirmed)

    def read(self, text: str, lang: str) -> list[Piece]:
        """Every question of `text` with its decision, in message order."""
        pieces: list[Piece] = []
        asked = [
            (part, before, sentence, self.matcher.query(part, lang))
            for question, before, sentence in self.questions(text)
            for part in self.coordinated(question, lang)
        ]
        if any(self.matcher.asks_anything(query) for *_, query in asked):
            # "Could you kindly and briefly tell me the budget?": a part made of function
            # words only asks nothing; the other parts carry the question.
            asked = [item for item in asked if self.matcher.asks_anything(item[3])]
        if self.splitter.is_list(text):
            # A line of a list that names nothing the knowledge base knows is a heading, a
            # greeting or a signature ("Marco"), not a question to forward.
            named = [item for item in asked if self.matcher.names_anything(item[3])]
            asked = named or asked
        # Sentences that ask: one of them before a question is another question, not context.
        asking = {sentence for _, _, sentence, _ in asked}
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
            if (
                answered
                and last is not None
                and last.unconfirmed
                and self._follows_up(question, lang, last)
            ):
                # "… a pre-financing? And in what percentage?": it goes to the secretariat
                # with the point it elaborates, not answered as a topic of its own.
                if sentence != last.sentence:
                    pieces[-1] = replace(last, sentence=f"{last.sentence} {sentence}")
                continue
            if not answered and not unconfirmed:
                # "Per pura curiosità (e un po' d'ansia) quanti progetti …?": the words before
                # the question word are its preamble, which only dilutes the topic the whole
                # question is closest to; read without them, that topic may be sure.
                trimmed = self.splitter.from_question_word(question)
                if trimmed and best is not None:
                    shorter = self.matcher.query(trimmed, lang)
                    decided = self.decide(shorter, self.is_closed(trimmed))
                    if decided[2] and decided[0] is not None and decided[0].group == best.group:
                        query = shorter
                        best, margin, answered, unconfirmed = decided
            query, (best, margin, answered, unconfirmed) = self._in_context(
                question,
                (before, before in asking),
                (text, sentence),
                lang,
                query,
                (best, margin, answered, unconfirmed),
            )
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
