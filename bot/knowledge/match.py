"""Rank FAQ entries for one question: a generic retrieval model over the entries' own data.

Nothing here knows the call. Every entry is a set of documents, its question variants in
both languages plus its keywords; the call's vocabulary (synonyms, acronyms, names of other
programmes) comes from the lexicon file. A text is folded (case, accents), its lexicon
phrases become concepts, and each remaining word is reduced to its Snowball stem (PyStemmer)
in the language of the text it comes from. In a question, a word the knowledge base does not
know is first corrected to a known word within a small edit distance (rapidfuzz); function
words unknown to the knowledge base (stop-words lists) are ignored; any other unknown word
is evidence that the question is about something the entries do not cover.

An entry's score blends two views, each in [0, 1]:
- similarity: the cosine between the question and the entry's closest variant (IDF-weighted
  binary term vectors), so one well-phrased variant is enough;
- coverage: the share of the question's informative weight (IDF over entries) that the
  entry's terms explain, so words outside the entry (other topics, unknown words) lower it.
The weights, the threshold and the margin over the runner-up are fitted on development data
(bench/faq.py --fit) and stored in the FAQ file, never set in code.

Scoring is a few sparse vector sums with numpy, so a look-up stays well under a millisecond
on thousands of entries; the index is built once, in `Matcher.__init__`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from bot.knowledge.analysis import (
    MAX_WORDS,
    Analyzer,
    Document,
    QueryTerms,
    Ranked,
    Tuning,
    meaningful,
    open_point_concepts,
    stopwords,
    stopwords_of,
)
from bot.knowledge.bayes import EntryModel
from bot.knowledge.chargrams import CharIndex
from bot.knowledge.facts import LANGUAGES
from bot.knowledge.lexicon import CONCEPT_MARK, Lexicon, tokens
from bot.knowledge.scoring import ClosestVariant, Postings, Recent
from bot.knowledge.spelling import Speller, Spellings
from bot.knowledge.vocabulary import Vocabulary

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


# Scorings kept per matcher (see scoring.Recent).
CACHED_SCORES = 64


class Matcher:
    """Ranks documents (FAQ entries) for a question; the knowledge base decides what to do."""

    def __init__(
        self,
        documents: Sequence[Document],
        lexicon: Lexicon,
        tuning: Tuning | None = None,
        informal: Mapping[str, Mapping[str, tuple[str, ...]]] | None = None,
        filler: frozenset[str] = frozenset(),
        known: frozenset[str] = frozenset(),
        cue_words: Mapping[str, frozenset[str]] | None = None,
        names: Sequence[str] = (),
        truncated: Mapping[str, Mapping[str, str]] | None = None,
        common: Container[str] = frozenset(),
    ) -> None:

        self.documents = tuple(documents)
        # The call's own names ("XYZ-2020-3-03") are written the same in every language: their
        # pieces say nothing of a message's language ("cos" of "cos'è").
        self._names = re.compile("|".join(re.escape(name) for name in names if name), re.IGNORECASE)
        unnamed = self.without_names
        # Words of asking and politeness ("please", "explain", "gentilmente") in a question
        # say nothing of its subject: ignored, even where an entry's variant uses them.
        self.filler = filler
        self.tuning = tuning or Tuning()
        self.analyzer = Analyzer(lexicon)
        self.stopwords = stopwords()
        # How often each word is written in the knowledge base: the speller's prior.
        surface: Counter[str] = Counter()
        for group in lexicon.groups:
            for phrase in group.terms:
                surface.update(phrase)
        # Per entry: its variants' term sets, and its profile (term -> strength in [0, 1]).
        variants: list[tuple[int, frozenset[str]]] = []
        described: list[tuple[int, frozenset[str], tuple[str, ...]]] = []
        profiles: list[dict[str, float]] = []
        self.language_words: dict[str, set[str]] = {lang: set() for lang in LANGUAGES}
        for index, document in enumerate(self.documents):
            counts: dict[str, int] = {}
            total = 0
            for lang in LANGUAGES:
                for question in document.questions.get(lang, ()):
                    words = tokens(question)
                    surface.update(words)
                    informative = tuple(
                        w for w in words if meaningful(w) and w not in self.stopwords
                    )
                    self.language_words[lang].update(tokens(unnamed(question)))
                    terms = frozenset(self.analyzer.terms(question, lang))
                    described.append((index, terms, informative))
                    if terms:
                        variants.append((index, terms))
                        total += 1
                    for term in terms:
                        counts[term] = counts.get(term, 0) + 1
            profile = {
                # A term most variants share is the entry's own; a term of one variant is
                # weaker evidence.
                term: min(1.0, 0.6 + count / max(2.0, 0.5 * total))
                for term, count in counts.items()
            }
            for lang in LANGUAGES:
                for keyword in document.keywords.get(lang, ()):
                    surface.update(tokens(keyword))
                    self.language_words[lang].update(tokens(unnamed(keyword)))
                    for term in self.analyzer.terms(keyword, lang):
                        profile[term] = 1.0
            profiles.append(profile)
            for lang, text in document.texts.items():
                if lang in self.language_words:
                    self.language_words[lang].update(tokens(unnamed(text)))
        self.profiles = profiles
        # Function words and the generic cues of each language say the language too ("che",
        # "the", "vorrei"); they are evidence of the language only, never matched.
        self.function_words = {
            lang: stopwords_of(lang) | (cue_words or {}).get(lang, frozenset())
            for lang in LANGUAGES
        }
        cues = cue_words or {}
        self.vocabulary = Vocabulary(
            self.language_words,
            self.function_words,
            frozenset.intersection(*(cues.get(lang, frozenset()) for lang in LANGUAGES)),
        )
        self.surface = frozenset(word for word in surface if not word.isdigit())
        count = len(self.documents)
        frequency: dict[str, int] = {}
        for profile in profiles:
            for term in profile:
                frequency[term] = frequency.get(term, 0) + 1
        scale = math.log(1 + max(1, count))
        # Function words (stop-words lists) weigh less even when the entries use them.
        stop_terms = {
            self.analyzer.term(word, lang) for word in self.stopwords for lang in LANGUAGES
        }
        self.stop_terms = frozenset(stop_terms)
        self.idf = {
            term: math.log(1 + count / df)
            / scale
            * (self.tuning.stopword_weight if term in stop_terms else 1.0)
            for term, df in frequency.items()
        }
        vectors: list[tuple[int, dict[str, float]]] = []
        for index, terms in variants:
            norm = math.sqrt(sum(self.idf.get(term, 0.0) ** 2 for term in terms)) or 1.0
            vectors.append((index, {term: self.idf.get(term, 0.0) / norm for term in terms}))
        self.variants = ClosestVariant(vectors, count)
        self._entry_postings = Postings(enumerate(profiles))
        self.open_terms = open_point_concepts(self.documents, profiles)
        self.analyzer.learn_concepts(self.idf)
        # The terms that name the call itself (its identifier).
        self.name_terms = frozenset(
            term for name in names for lang in LANGUAGES for term in self.analyzer.terms(name, lang)
        )
        self.chars = CharIndex([(index, words) for index, _, words in described], count)
        self.bayes = EntryModel.of_variants(described, self.idf, count)
        self._recent: Recent[tuple[object, ...], npt.NDArray[np.float64]] = Recent(CACHED_SCORES)
        real_words = self.stopwords | self.filler | known
        self.spellings = Spellings(
            Speller({w: surface[w] for w in self.surface}, real_words, common),
            informal,
            truncated,
        )

    # ------------------------------------------------------------------ the question

    def without_names(self, text: str) -> str:
        """`text` with the call's own names blanked out (they say nothing of its language)."""
        return self._names.sub(" ", text) if self._names.pattern else text

    def correct(self, word: str) -> str:
        """A known word for an unknown one within a small edit distance (see spelling.py)."""
        return self.spellings.correct(word)

    def query(self, text: str, lang: str) -> QueryTerms:
        """The weighted terms of a question written (mostly) in `lang`."""
        order = [lang, *(other for other in LANGUAGES if other != lang)]
        spellings = self.spellings
        # Fillers go before correction, which would read them as the knowledge base's words.
        expanded = [
            word
            for word in spellings.expand(
                tokens(spellings.written_out(text, lang))[:MAX_WORDS], lang
            )
            if word not in self.filler
        ]
        words = [
            word
            for word in self.analyzer.lexicon.concepts([self.correct(word) for word in expanded])
            if meaningful(word) and word not in self.filler
        ]
        weights: dict[str, float] = {}
        unknown: set[str] = set()
        for word in words:
            term = None
            if word.startswith(CONCEPT_MARK) or word.isdigit():
                term = word if word in self.idf else None
            else:
                for candidate_lang in order:
                    stem = self.analyzer.term(word, candidate_lang)
                    if stem in self.idf:
                        term = stem
                        break
                else:
                    term = self.analyzer.concept_by_stem(word, order)
            if term is not None:
                weights[term] = self.idf[term]
            elif word not in self.stopwords and len(word) > 1 and not word.isdigit():
                # A number the entries do not hold is the asker's guess of a value ("more
                # than 20 projects?"), not a subject: neither known nor unknown.
                unknown.add(word)
        if any(term not in self.name_terms and term not in self.stop_terms for term in weights):
            # The call's own name says which call, not what about it ("deadline <call id>").
            for term in self.name_terms & weights.keys():
                weights[term] *= self.tuning.name_weight
        concepts = frozenset(word for word in words if word.startswith(CONCEPT_MARK))
        written = tuple(
            word for word in expanded if meaningful(word) and word not in self.stopwords
        )
        return QueryTerms(
            weights, self.tuning.unknown_weight**2 * len(unknown), len(words), concepts, written
        )

    # ------------------------------------------------------------------ ranking

    def scores(self, query: QueryTerms) -> npt.NDArray[np.float64]:
        """Every entry's score for `query`, in entry order."""
        key = (tuple(sorted(query.weights.items())), query.unknown, query.written)
        return self._recent.get(key, lambda: self._score(query))

    def clear_cache(self) -> None:
        """Forget kept scorings (a benchmark times each message as if it came first)."""
        self._recent.clear()
        self.bayes.clear_cache()
        self.chars.clear_cache()

    def _score(self, query: QueryTerms) -> npt.NDArray[np.float64]:
        import numpy as np

        count = len(self.documents)
        known = sum(weight * weight for weight in query.weights.values())
        total = known + query.unknown
        if not query.weights or total <= 0 or self.variants.count == 0:
            return np.zeros(count)
        rows, values, _ = self._entry_postings.gather(
            (term, weight * weight) for term, weight in query.weights.items()
        )
        best_variant = self.variants.best(query.weights.items()) / math.sqrt(total)
        coverage = np.bincount(rows, weights=values, minlength=count) / total
        blend = self.tuning.blend
        result: npt.NDArray[np.float64] = blend * best_variant + (1 - blend) * coverage
        share = self.tuning.char_weight
        if share > 0:
            # Misspelt, cut or regional forms the words miss still share their pieces.
            result = (1 - share) * result + share * self.chars.scores(query.written)
        share = self.tuning.bayes_weight
        if share > 0:
            # Words common across one entry's variants, though no single variant holds them
            # all, still point to it.
            result = (1 - share) * result + share * self.posterior(query)
        return result

    def posterior(self, query: QueryTerms) -> npt.NDArray[np.float64]:
        """Every entry's probability for `query` under the naive Bayes view (bayes.py)."""
        return self.bayes.scores(query.weights, query.written)

    def rank(self, text: str, lang: str, limit: int = 5) -> list[Ranked]:
        """The best entries for `text`, best first (at most `limit`, only scores above 0)."""
        return self.rank_query(self.query(text, lang), limit)

    def rank_query(self, query: QueryTerms, limit: int = 5) -> list[Ranked]:
        """The best entries for an analysed question."""
        import numpy as np

        if not self.documents:
            return []
        scores = self.scores(query)
        size = min(limit, len(scores))
        top = np.argpartition(-scores, size - 1)[:size] if size < len(scores) else np.arange(size)
        ordered = sorted(top.tolist(), key=lambda i: (-scores[i], i))
        return [
            Ranked(i, self.documents[i].id, self.documents[i].group, float(scores[i]))
            for i in ordered
            if scores[i] > 0
        ]

    def best(self, query: QueryTerms) -> tuple[Ranked | None, float, list[Ranked]]:
        """The best entry, its margin over the best entry of another group, and the ranking."""
        ranked = self.rank_query(query)
        if not ranked:
            return None, 0.0, ranked
        first = ranked[0]
        runner_up = next((r.score for r in ranked[1:] if r.group != first.group), 0.0)
        return first, first.score - runner_up, ranked

    def names_anything(self, query: QueryTerms) -> bool:
        """Whether `query` holds a known word beyond function words."""
        return any(term not in self.stop_terms for term in query.weights)

    def asks_anything(self, query: QueryTerms) -> bool:
        """Whether `query` names anything beyond function words ("could you kindly")."""
        return query.unknown > 0 or any(term not in self.stop_terms for term in query.weights)

    def open_points(self, query: QueryTerms, index: int) -> frozenset[int]:
        """The entries on points the facts leave open that hold a term of `query` which no
        answer entry holds and entry `index` does not either ("coordinator")."""
        found: set[int] = set()
        for term in query.weights:
            owners = self.open_terms.get(term)
            if owners and term not in self.profiles[index]:
                found.update(owners)
        return frozenset(found)

    def holds(self, index: int, term: str) -> bool:
        """Whether entry `index` knows `term` (in a variant or a keyword)."""
        return term in self.profiles[index]

    def residual(self, query: QueryTerms, index: int) -> QueryTerms:
        """What `query` asks beyond entry `index`: its terms the entry does not hold."""
        profile = self.profiles[index]
        left = {term: weight for term, weight in query.weights.items() if term not in profile}
        return QueryTerms(left, query.unknown, query.words, query.concepts)

    def language_votes(self, words: Iterable[str]) -> dict[str, int]:
        """How many of `words` only one language uses, per language (see vocabulary.py)."""
        return self.vocabulary.votes(words)


__all__ = ["Document", "Matcher", "QueryTerms", "Ranked", "Tuning"]
