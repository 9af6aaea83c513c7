"""Typo tolerance: an unknown word of a question read as a known one a small edit away.

Only a word that is neither the knowledge base's (as written, or through its stem: "capito"
is known when "capire" is) nor a word of the language resources (stop words, the cues and
fillers of language.yaml) is corrected, to the closest word of the knowledge base within one
edit (two from 8 letters, rapidfuzz OSA distance). A tie is settled the same way in every run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# Shortest unknown word worth correcting; shorter ones are too ambiguous.
MIN_CORRECTED = 4
LONG_WORD = 8
MAX_CORRECTIONS_CACHED = 4096


class Speller:
    """Corrects unknown words to the knowledge base's own words."""

    def __init__(
        self,
        surface: Iterable[str],
        known: Iterable[str],
        is_indexed: Callable[[str], bool],
    ) -> None:
        self.surface = frozenset(surface)
        # Real words that are not the knowledge base's: never turned into one of its words.
        self.known = frozenset(known)
        self.is_indexed = is_indexed
        self._corrections: dict[str, str] = {}
        self._by_length: dict[int, list[str]] = {}
        for word in sorted(self.surface):
            self._by_length.setdefault(len(word), []).append(word)

    def correct(self, word: str) -> str:
        """A known word for an unknown one within a small edit distance, else the word."""
        if (
            word in self.surface
            or word in self.known
            or len(word) < MIN_CORRECTED
            or not word.isalpha()
        ):
            return word
        cached = self._corrections.get(word)
        if cached is not None:
            return cached
        best = word if self.is_indexed(word) else self._closest(word)
        if len(self._corrections) >= MAX_CORRECTIONS_CACHED:
            self._corrections.clear()
        self._corrections[word] = best
        return best

    def _closest(self, word: str) -> str:
        from rapidfuzz import process
        from rapidfuzz.distance import OSA

        limit = 1 if len(word) < LONG_WORD else 2
        best = word
        best_distance = limit + 1
        # Never to a word shorter than the shortest corrected one: "pick" is no typo of the
        # acronym "pic".
        for size in range(max(MIN_CORRECTED, len(word) - limit), len(word) + limit + 1):
            candidates = self._by_length.get(size)
            if not candidates:
                continue
            found = process.extractOne(
                word, candidates, scorer=OSA.distance, score_cutoff=best_distance - 1
            )
            if found is not None and found[1] < best_distance:
                best, best_distance = found[0], int(found[1])
        return best
