"""A second view of a question: the pieces of its words, 3 and 4 characters long.

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
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

SIZES = (3, 4)
# Pieces held by more of the variants than this share say nothing of the subject.
MAX_SHARE = 0.05
# Questions whose scores are kept: a message is read as a few overlapping questions.
CACHED = 64


def pieces(words: Iterable[str]) -> frozenset[str]:
    """The 3- and 4-character pieces of `words`, each word marked at both ends by a space
    (so a piece at a word's start or end differs from the same letters inside one)."""
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
        import numpy as np

        self.entries = entries
        ordered = sorted(
            ((entry, pieces(words)) for entry, words in variants if words), key=lambda v: v[0]
        )
        count = len(ordered)
        frequency: dict[str, int] = {}
        for _, found in ordered:
            for piece in found:
                frequency[piece] = frequency.get(piece, 0) + 1
        limit = max(2.0, MAX_SHARE * count)
        self.idf = {
            piece: math.log(1 + count / df) for piece, df in frequency.items() if df <= limit
        }
        self._common = frozenset(piece for piece, df in frequency.items() if df > limit)
        # A piece no variant holds (an unknown word's) weighs like the rarest: it is evidence
        # that the question is about something else, as unknown words are in match.py.
        self._unseen = math.log(1 + max(1, count))
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for row, (_, found) in enumerate(ordered):
            kept = [piece for piece in found if piece in self.idf]
            norm = math.sqrt(sum(self.idf[piece] ** 2 for piece in kept)) or 1.0
            for piece in kept:
                rows, values = postings.setdefault(piece, ([], []))
                rows.append(row)
                # The question's weight for the piece (its IDF) is folded in here already.
                values.append(self.idf[piece] ** 2 / norm)
        self._postings = {
            piece: (np.array(rows, dtype=np.int64), np.array(values))
            for piece, (rows, values) in postings.items()
        }
        self._count = count
        owner = np.array([entry for entry, _ in ordered], dtype=np.int64)
        self._has_variant = np.zeros(entries, dtype=bool)
        self._has_variant[owner] = True
        self._every_entry_has_one = bool(self._has_variant.all())
        starts = np.searchsorted(owner, np.arange(entries))
        self._starts = np.minimum(starts, max(0, count - 1))
        self._cache: dict[tuple[str, ...], npt.NDArray[np.float64]] = {}

    def clear_cache(self) -> None:
        """Forget kept scorings."""
        self._cache.clear()

    def scores(self, words: Sequence[str]) -> npt.NDArray[np.float64]:
        """Every entry's score for a question's informative words, in entry order."""
        import numpy as np

        key = tuple(words)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        asked = pieces(words) - self._common
        found = [piece for piece in asked if piece in self._postings]
        if not found or self._count == 0:
            result: npt.NDArray[np.float64] = np.zeros(self.entries)
        else:
            norm = math.sqrt(sum(self.idf.get(piece, self._unseen) ** 2 for piece in asked))
            rows = np.concatenate([self._postings[piece][0] for piece in found])
            values = np.concatenate([self._postings[piece][1] for piece in found])
            similarity = np.bincount(rows, weights=values, minlength=self._count)
            # Divided per entry, not per variant: the same result, fewer numbers.
            result = np.maximum.reduceat(similarity, self._starts) / norm
            if not self._every_entry_has_one:
                result = np.where(self._has_variant, result, 0.0)
        if len(self._cache) >= CACHED:
            self._cache.clear()
        self._cache[key] = result
        return result
