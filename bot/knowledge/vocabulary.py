"""Which words say which language: those only one language of the knowledge base uses (its
variants, keywords and answers), and function words and cues only one language has."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property

from bot.knowledge.facts import LANGUAGES


class Vocabulary:
    """Per language, the knowledge base's words and the language's function words."""

    def __init__(
        self,
        language_words: Mapping[str, set[str]],
        function_words: Mapping[str, frozenset[str]],
        neutral: frozenset[str] = frozenset(),
    ) -> None:
        self.language_words = language_words
        self.function_words = function_words
        self.neutral = neutral

    @cached_property
    def exclusive_words(self) -> Mapping[str, frozenset[str]]:
        """Per language, the words only that language's entries, function words and cues use."""
        exclusive: dict[str, frozenset[str]] = {}
        for lang, words in self.language_words.items():
            others = [o for o in LANGUAGES if o != lang]
            other_words = set().union(*(self.language_words[o] for o in others))
            other_function = set().union(*(self.function_words[o] for o in others))
            # A word every language's cues or fillers hold ("ok") says nothing of the
            # language, even where only this language's entries use it.
            exclusive[lang] = frozenset(words - other_words - self.neutral) | frozenset(
                self.function_words[lang] - other_function - other_words
            )
        return exclusive

    def votes(self, words: Iterable[str]) -> dict[str, int]:
        """How many of `words` only one language uses, per language."""
        exclusive = self.exclusive_words
        votes = dict.fromkeys(LANGUAGES, 0)
        for word in words:
            for lang in LANGUAGES:
                if word in exclusive[lang]:
                    votes[lang] += 1
        return votes
