"""A second view of a question: the pieces of its words, 4 characters long.

The lexical view (match.py) reads whole words, stemmed and spell-corrected one at a time. A
word that is misspelt beyond the corrector, cut short, run together with the next, or written
in a regional or chat form still shares most of its pieces with the word it stands for
("finanziamneto", "eligibilty", "scadensa"). This view compares a question's pieces with
each variant's (TF-IDF cosine, the closest variant per entry), with nothing known of the
call or of either language.

A piece most variants hold ("ion ", " de") tells entries apart no better than a stop word:
pieces in more than `MAX_SHARE` of the variants are left out of the index.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from bot.knowledge.scoring import ClosestVariant, Recent

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# 3-character pieces as well tell entries apart no better (measured on the labelled sets) and
# more than double the work.
SIZES = (4,)
# Pieces held by more of the variants than this share say nothing of the subject.
MAX_SHARE = 0.05
# Questions whose scores are kept (see scoring.Recent).
CACHED = 64


def pieces(words: Iterable[str]) -> frozenset[str]:
    """The 4-character pieces of `words`, each word marked at both ends by a space
    (so a piece at a word's start or end differs from the same letters inside one)."""
    return _pieces(tuple(words))


# The views of a variant or a question (here and in bayes.py) ask for the same pieces.
@lru_cache(maxsize=4096)
def _pieces(words: tuple[str, ...]) -> frozenset[str]:
    found: set[str] = set()
    for word in words:
        marked = f" {word} "
        for size in SIZES:
            found.update(marked[at : at + size] for at in range(len(marked) - size + 1))
    return frozenset(found)


class CharIndex:
    """Per entry, the cosine between a question's pieces and its closest variant's."""

    def __init__(self, variants: Sequence[tuple[int, Sequence[str]]], entries: int) -> None:
        """Index `variants`, (entry index, the variant's words) pairs, of `entries` entries."""
        self.entries = entries
        found = [(entry, pieces(words)) for entry, words in variants if words]
        count = len(found)
        frequency: Counter[str] = Counter()
        for _, held in found:
            frequency.update(held)
        limit = max(2.0, MAX_SHARE * count)
        self.idf = {
            piece: math.log(1 + count / df) for piece, df in frequency.items() if df <= limit
        }
        self._common = frozenset(piece for piece, df in frequency.items() if df > limit)
        # A piece no variant holds (an unknown word's) weighs like the rarest: it is evidence
        # that the question is about something else, as unknown words are in match.py.
        self._unseen = math.log(1 + max(1, count))
        vectors: list[tuple[int, dict[str, float]]] = []
        for entry, held in found:
            kept = [piece for piece in held if piece in self.idf]
            norm = math.sqrt(sum(self.idf[piece] ** 2 for piece in kept)) or 1.0
            # The question's weight for a piece (its IDF) is folded in here already.
            vectors.append((entry, {piece: self.idf[piece] ** 2 / norm for piece in kept}))
        self._variants = ClosestVariant(vectors, entries)
        self._recent: Recent[tuple[str, ...], npt.NDArray[np.float64]] = Recent(CACHED)

    def clear_cache(self) -> None:
        """Forget kept scorings."""
        self._recent.clear()

    def scores(self, words: Sequence[str]) -> npt.NDArray[np.float64]:
        """Every entry's score for a question's informative words, in entry order."""
        return self._recent.get(tuple(words), lambda: self._score(words))

    def _score(self, words: Sequence[str]) -> npt.NDArray[np.float64]:
        asked = pieces(words) - self._common
        norm = math.sqrt(sum(self.idf.get(piece, self._unseen) ** 2 for piece in asked)) or 1.0
        # Divided per entry, not per variant: the same result, fewer numbers.
        result: npt.NDArray[np.float64] = (
            self._variants.best((piece, 1.0) for piece in asked) / norm
        )
        return result
