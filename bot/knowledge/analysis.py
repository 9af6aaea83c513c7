"""How the matcher sees text: its parameters, the documents it indexes, analysed questions,
and the analyzer (folding, lexicon concepts, Snowball stems per language, stop words)."""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.knowledge.facts import LANGUAGES
from bot.knowledge.lexicon import CONCEPT_MARK, Lexicon, tokens

# Longest input looked at per question: enough for any real one, bounded work for any input.
MAX_WORDS = 80
STEMMER_NAMES = {"it": "italian", "en": "english"}
# The group of entries on points the facts leave open starts with this mark.
OPEN_GROUP = "?"
# Shortest stem by which another form of a lexicon term is read as its concept.
MIN_CONCEPT_STEM = 4
# What the answer-or-forward model reads of a question and its best entry (decision.py):
# the entry's score and margin over another topic, the share of the question's weight in
# words no entry knows, its length (log of words), the share of its known weight the entry
# does not explain, whether it asks for a yes or a no, whether the entry is a claim, how
# much the question's known words say (the norm of their weights, function words left out),
# how far the closest point the facts leave open is behind the entry, and the share of the
# question's known weight in words that point holds and the entry does not ("budget per
# partner?": "partner").
DECISION_FEATURES = (
    "score",
    "margin",
    "unknown",
    "words",
    "unexplained",
    "closed",
    "claim",
    "information",
    "open_gap",
    "open_terms",
)


@dataclass(frozen=True)
class Tuning:
    """The matcher's free parameters, fitted on development data (see bench/faq.py --fit)."""

    threshold: float = 0.45
    margin: float = 0.04
    blend: float = 0.5
    unknown_weight: float = 0.6
    stopword_weight: float = 0.3
    # Margin needed over another topic's answer (ambiguity); `margin` is the one needed over
    # an unconfirmed point (safety).
    answer_margin: float = 0.04
    # Weight of the call's own name in a question that also names something else.
    name_weight: float = 0.3
    # Weight of the character-piece view (chargrams.py) in an entry's score; 0: words only.
    char_weight: float = 0.0
    # Weight of the naive Bayes view (bayes.py) in an entry's score; 0: the other views only.
    bayes_weight: float = 0.0
    # The answer-or-forward decision, a logistic model over `DECISION_FEATURES` fitted on
    # development data: its bias and one weight per feature. All zero: no model, and the
    # threshold and `answer_margin` decide instead.
    decision_bias: float = 0.0
    decision_score: float = 0.0
    decision_margin: float = 0.0
    decision_unknown: float = 0.0
    decision_words: float = 0.0
    decision_unexplained: float = 0.0
    decision_closed: float = 0.0
    decision_claim: float = 0.0
    decision_information: float = 0.0
    decision_open_gap: float = 0.0
    decision_open_terms: float = 0.0

    @property
    def decision_weights(self) -> tuple[float, ...]:
        """The model's weights in `DECISION_FEATURES` order."""
        return tuple(getattr(self, f"decision_{name}") for name in DECISION_FEATURES)

    @property
    def has_decision(self) -> bool:
        """Whether a fitted answer-or-forward model is in use."""
        return any(self.decision_weights)

    def accepts(self, features: Sequence[float]) -> bool:
        """Whether the model says to answer: its log-odds for the features are positive."""
        odds = self.decision_bias + sum(
            weight * value for weight, value in zip(self.decision_weights, features, strict=True)
        )
        return odds > 0

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Tuning:
        defaults = cls()
        return cls(
            **{
                name: float(raw.get(name, getattr(defaults, name)))
                for name in (
                    "threshold",
                    "margin",
                    "blend",
                    "unknown_weight",
                    "stopword_weight",
                    "answer_margin",
                    "name_weight",
                    "char_weight",
                    "bayes_weight",
                    "decision_bias",
                    *(f"decision_{name}" for name in DECISION_FEATURES),
                )
            }
        )


@dataclass(frozen=True)
class Document:
    """What the matcher reads of one entry: its id, group, variants and keywords per language."""

    id: str
    group: str
    questions: Mapping[str, Sequence[str]]
    keywords: Mapping[str, Sequence[str]]
    # Other texts in each language (answers): evidence of the language only, never matched.
    texts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ranked:
    """One entry's place in a ranking."""

    index: int
    id: str
    group: str
    score: float


@dataclass(frozen=True)
class QueryTerms:
    """A question as the matcher sees it: known terms with weights, and unknown weight."""

    weights: Mapping[str, float]
    unknown: float
    words: int
    # Lexicon concepts named in the question, known to the entries or not ("other_programmes").
    concepts: frozenset[str] = frozenset()
    # Its informative words as written (informal forms read, fillers and function words
    # left out), for the character-piece view.
    written: tuple[str, ...] = ()


def meaningful(word: str) -> bool:
    return len(word) > 1 or word.isdigit()


def stemmers() -> dict[str, Any]:
    import Stemmer

    return {lang: Stemmer.Stemmer(name) for lang, name in STEMMER_NAMES.items()}


def stopwords_of(lang: str) -> frozenset[str]:
    """The folded function words of one language (stop-words lists)."""
    from stop_words import get_stop_words

    words: set[str] = set()
    for word in get_stop_words(lang):
        words.update(tokens(word))
    return frozenset(words)


def stopwords() -> frozenset[str]:
    """The function words of both languages."""
    return frozenset().union(*(stopwords_of(lang) for lang in LANGUAGES))


class Analyzer:
    """Folds, maps lexicon phrases to concepts and stems, per language."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        self.stem = stemmers()
        # Per language, the stem of each one-word lexicon term -> its concept (None where two
        # concepts share a stem), so that other forms of the word read as the concept too.
        self.concept_stems: dict[str, dict[str, str | None]] = {lang: {} for lang in LANGUAGES}

    # The stemmers are C objects pickle cannot save; a kept index (index_cache.py) gets new
    # ones.
    def __getstate__(self) -> dict[str, object]:
        return {name: value for name, value in vars(self).items() if name != "stem"}

    def __setstate__(self, state: dict[str, object]) -> None:
        vars(self).update(state)
        self.stem = stemmers()

    def learn_concepts(self, known: Container[str]) -> None:
        """Fill `concept_stems` with the concepts in `known` (the index's terms)."""
        for group in self.lexicon.groups:
            concept = CONCEPT_MARK + "_".join(tokens(group.name))
            if concept not in known:
                continue
            for phrase in group.terms:
                if len(phrase) != 1 or phrase[0].isdigit():
                    continue
                for lang in LANGUAGES:
                    stem = self.term(phrase[0], lang)
                    if len(stem) < MIN_CONCEPT_STEM:
                        continue
                    table = self.concept_stems[lang]
                    table[stem] = concept if table.get(stem, concept) == concept else None

    def concept_by_stem(self, word: str, order: Sequence[str]) -> str | None:
        """The lexicon concept one of whose one-word terms shares `word`'s stem ("durare"
        for a group holding "durata"), if exactly one does."""
        for lang in order:
            concept = self.concept_stems[lang].get(self.term(word, lang))
            if concept:
                return concept
        return None

    def words(self, text: str) -> list[str]:
        """Folded words with lexicon phrases replaced by their concept (single letters, left
        by elisions such as "what's" or "l'", dropped)."""
        return [w for w in self.lexicon.concepts(tokens(text)[:MAX_WORDS]) if meaningful(w)]

    def term(self, word: str, lang: str) -> str:
        """A word's index term in `lang`: a concept as is, any other word by its stem."""
        if word.startswith(CONCEPT_MARK) or word.isdigit():
            return word
        stemmed: str = self.stem[lang].stemWord(word)
        return stemmed

    def terms(self, text: str, lang: str) -> list[str]:
        return [self.term(word, lang) for word in self.words(text)]


def open_point_concepts(
    documents: Sequence[Document], profiles: Sequence[Mapping[str, float]]
) -> dict[str, frozenset[int]]:
    """Lexicon concepts only entries on open points hold (their group starts with "?"):
    concept -> those entries. Concepts only: the call's own vocabulary, not a word that a
    variant or keyword happens to hold."""
    answer_terms = {
        term
        for document, profile in zip(documents, profiles, strict=True)
        if not document.group.startswith(OPEN_GROUP)
        for term in profile
    }
    found: dict[str, set[int]] = {}
    for index, (document, profile) in enumerate(zip(documents, profiles, strict=True)):
        if document.group.startswith(OPEN_GROUP):
            for term in profile:
                if term.startswith(CONCEPT_MARK) and term not in answer_terms:
                    found.setdefault(term, set()).add(index)
    return {term: frozenset(owners) for term, owners in found.items()}
