"""A third view of a question: how probable each entry makes its words and word pieces.

The word view and the character view (match.py, chargrams.py) compare a question with each
entry's closest variant. An entry's variants together also say which words it uses often
and which it never uses: a question whose every word is common across one entry's variants
belongs to it, even when no single variant holds them all. This view is a multinomial naive
Bayes model over every entry's variants, with the question's stems and concepts (weighted
by IDF, as match.py weighs them) and the 4-character pieces of its written words as
features. It is built by counting, so it costs no training time, and it knows nothing of
the call or of either language.

An entry's score is its posterior probability (a uniform prior over entries), which is
sharp: the fitted `bayes_weight` mixes it into the other views' score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from bot.knowledge.chargrams import pieces
from bot.knowledge.scoring import Postings, Recent

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# Additive smoothing of the feature counts (Lidstone): how much an unseen feature counts.
SMOOTHING = 0.1
# Pieces held by more of the entries than this share tell entries apart no better than a
# stop word: left out of a question, which keeps the work small on a large knowledge base.
MAX_SHARE = 0.5
# Questions whose posteriors are kept (see scoring.Recent).
CACHED = 64
# What marks a character piece, so a piece and a stem with the same letters stay apart.
PIECE_MARK = "#"


def features(terms: Mapping[str, float], words: Sequence[str]) -> dict[str, float]:
    """A question's (or a variant's) features: its terms with their weights, and the
    character pieces of its written words, which weigh 1 together (unit length)."""
    found = dict(terms)
    held = pieces(words)
    if held:
        share = 1.0 / math.sqrt(len(held))
        for piece in held:
            found[PIECE_MARK + piece] = share
    return found


class EntryModel:
    """Multinomial naive Bayes over entries, each described by its variants' features."""

    def __init__(self, variants: Sequence[tuple[int, Mapping[str, float]]], entries: int) -> None:
        """Count `variants`, (entry index, feature -> value) pairs, of `entries` entries."""
        import numpy as np

        self.entries = entries
        self._recent: Recent[tuple[object, ...], npt.NDArray[np.float64]] = Recent(CACHED)
        # One count per (feature, entry).
        self._counts = Postings(variants)
        totals = np.bincount(self._counts.rows, weights=self._counts.values, minlength=entries)
        size = max(1, len(self._counts.ids))
        # log p(feature | entry) = log(count + a) - log(total + a * size): the second term is
        # the entry's own, the first differs from log(a) only where the entry holds the
        # feature, so a question costs one posting per feature it has.
        self._base = math.log(SMOOTHING) - np.log(totals + SMOOTHING * size)
        self._counts.values = np.log1p(self._counts.values / SMOOTHING)
        # An entry without variants is never the most probable one.
        self._empty = totals <= 0
        limit = MAX_SHARE * int((~self._empty).sum())
        self._common = frozenset(
            feature
            for feature in self._counts.ids
            if feature.startswith(PIECE_MARK) and self._counts.holders(feature) > limit
        )

    @classmethod
    def of_variants(
        cls,
        variants: Iterable[tuple[int, Iterable[str], Sequence[str]]],
        idf: Mapping[str, float],
        entries: int,
    ) -> EntryModel:
        """The model of (entry index, the variant's terms, its written words) triples, each
        term weighted by its IDF as in a question."""
        return cls(
            [
                (entry, features({term: idf[term] for term in terms}, words))
                for entry, terms, words in variants
            ],
            entries,
        )

    def scores(self, weights: Mapping[str, float], words: Sequence[str]) -> npt.NDArray[np.float64]:
        """Every entry's probability for a question's weighted terms and written words."""
        key = (tuple(sorted(weights.items())), tuple(words))
        return self._recent.get(key, lambda: self.posterior(features(weights, words).items()))

    def clear_cache(self) -> None:
        """Forget kept posteriors."""
        self._recent.clear()

    def posterior(self, weights: Iterable[tuple[str, float]]) -> npt.NDArray[np.float64]:
        """Every entry's probability given a question's (feature, weight) pairs; features no
        variant holds are left out. All zero when the question holds no known feature."""
        import numpy as np

        rows, values, mass = self._counts.gather(
            (feature, weight) for feature, weight in weights if feature not in self._common
        )
        if not len(rows):
            return np.zeros(self.entries)
        log_joint = mass * self._base + np.bincount(rows, weights=values, minlength=self.entries)
        log_joint[self._empty] = -np.inf
        log_joint -= log_joint.max()
        probability: npt.NDArray[np.float64] = np.exp(log_joint)
        probability /= probability.sum()
        return probability
