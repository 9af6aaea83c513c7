"""Which language a message is written in: Italian or English, or undecided.

A language-identification library (lingua, restricted to the two languages, low-accuracy
mode so that it loads in milliseconds) reads the letters; the knowledge base's own words
(those only one language's variants use) and the generic courtesy words of language.yaml
vote too. Neither is reliable alone on a one- or two-word message ("ciao", "ok grazie"), so
an undecided message returns None and the caller falls back to the conversation's language.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from bot.knowledge.cues import LanguageCues
from bot.knowledge.facts import LANGUAGES
from bot.knowledge.lexicon import surface_words, tokens

if TYPE_CHECKING:
    from bot.knowledge.match import Matcher

# How far the library's probability of Italian (plus the word votes) must be from 1/2: for
# one or two words, for longer messages, and for messages with no knowledge-base word at all;
# one knowledge-base word is worth this much probability.
SHORT_WORDS = 2
FEW_WORDS = 4
SHORT_CONFIDENCE = 0.4
LONG_CONFIDENCE = 0.1
ALONE_CONFIDENCE = 0.4
ALONE_WORDS = 3
WORD_VOTE = 0.3
# How far from 1/2 the library must lean for a guess (`guess`) where nothing else says.
GUESS_CONFIDENCE = 0.3
MAX_CHARS = 600
_ITALIAN_FINALS = frozenset("àèéìòù")


@cache
def _detector() -> Any:
    from lingua import Language, LanguageDetectorBuilder

    return (
        LanguageDetectorBuilder.from_languages(Language.ITALIAN, Language.ENGLISH)
        .with_low_accuracy_mode()
        .build()
    )


def italian_probability(text: str) -> float:
    """The library's probability that `text` is Italian rather than English (0.5: unknown)."""
    from lingua import Language

    values = {
        value.language: float(value.value)
        for value in _detector().compute_language_confidence_values(text[:MAX_CHARS])
    }
    italian = values.get(Language.ITALIAN, 0.0)
    total = italian + values.get(Language.ENGLISH, 0.0)
    # Both zero: the library has no evidence at all ("ok", an emoji).
    return italian / total if total > 0 else 0.5


def identify(text: str, votes: Mapping[str, int]) -> str | None:
    """'it', 'en' or None (undecided) for `text`, given knowledge-base word votes."""
    words = tokens(text[:MAX_CHARS])
    if not words:
        return None
    balance = WORD_VOTE * (votes.get("it", 0) - votes.get("en", 0))
    # Numbers are written alike in both languages: they do not make a message longer.
    length = sum(not word.isdigit() for word in words)
    if not length:
        return None
    if not any(votes.values()) and sum(len(word) > 2 for word in words) < ALONE_WORDS:
        # Nothing the knowledge base knows, and too few words for the library alone (a name,
        # "broken bytes", markup): it does not say which language the conversation is in.
        return None
    if length <= FEW_WORDS and min(votes.values(), default=0) == 0 and balance:
        # On a few words the knowledge base's own words and the function words of one
        # language are the better judge ("Che cos'è questo?").
        return "it" if balance > 0 else "en"
    probability = italian_probability(text)
    # Both values read toward Italian when positive.
    lean = (probability - 0.5) + balance
    if length <= SHORT_WORDS:
        needed = SHORT_CONFIDENCE
    elif any(votes.values()):
        needed = LONG_CONFIDENCE
    else:
        # No word of the knowledge base: the library alone must be sure.
        needed = ALONE_CONFIDENCE
    if abs(lean) < needed:
        return None
    return "it" if lean > 0 else "en"


def guess(text: str) -> str | None:
    """The library's reading of the letters alone, for a message `detect` leaves undecided in
    a conversation with no language yet: a weak hint, better than the configured default
    ("Deadline?" is English); None when the letters lean neither way ("ok", a number)."""
    words = tokens(text[:MAX_CHARS])
    if not words or all(word.isdigit() for word in words):
        return None
    lean = italian_probability(text) - 0.5
    if abs(lean) < GUESS_CONFIDENCE:
        return None
    return "it" if lean > 0 else "en"


def detect(text: str, matcher: Matcher, cues: LanguageCues) -> str | None:
    """'it', 'en' or None for a message, from the library, the knowledge base's words and the
    informal spellings of language.yaml."""
    words = tokens(matcher.without_names(text[:MAX_CHARS]))
    # Typos corrected to known words vote too ("tel me a jok").
    votes = matcher.language_votes(set(words) | {matcher.correct(w) for w in words})
    # A word ending in an accented vowel ("è", "può", "perché") is Italian: English has
    # almost none, and the folded words above lose the accent.
    votes["it"] = votes.get("it", 0) + sum(
        1 for word in surface_words(text[:MAX_CHARS]) if word[-1:] in _ITALIAN_FINALS
    )
    # Informal spellings ("plz", "nn") say their language, and mislead the letter-based
    # library: it reads the message with the words they stand for.
    found = False
    expanded: list[str] = []
    for word in words:
        for lang, table in cues.informal.items():
            if word in table and not any(
                word in matcher.function_words[other] for other in LANGUAGES if other != lang
            ):
                votes[lang] = votes.get(lang, 0) + 1
                expanded.extend(table[word])
                found = True
                break
        else:
            expanded.append(word)
    return identify(" ".join(expanded) if found else text, votes)


__all__ = ["LANGUAGES", "detect", "guess", "identify", "italian_probability"]
