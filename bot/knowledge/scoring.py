"""What both views of a question (words in match.py, character pieces in chargrams.py) score
with: each entry's closest variant over sparse postings, and a small store of recent results."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class ClosestVariant:
    """Per entry, the highest dot product between a question's weights and one of its
    variants' vectors."""

    def __init__(self, variants: Sequence[tuple[int, Mapping[str, float]]], entries: int) -> None:
        """Index `variants`, (entry index, feature -> value) pairs, of `entries` entries."""
        import numpy as np

        self.entries = entries
        # Variants sorted by entry, so a per-entry maximum is one reduceat.
        ordered = sorted(variants, key=lambda variant: variant[0])
        self.count = len(ordered)
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for row, (_, vector) in enumerate(ordered):
            for feature, value in vector.items():
                rows, values = postings.setdefault(feature, ([], []))
                rows.append(row)
                values.append(value)
        self._postings = {
            feature: (np.array(rows, dtype=np.int64), np.array(values))
            for feature, (rows, values) in postings.items()
        }
        owner = np.array([entry for entry, _ in ordered], dtype=np.int64)
        self._has_variant = np.zeros(entries, dtype=bool)
        self._has_variant[owner] = True
        self._every_entry_has_one = bool(self._has_variant.all())
        starts = np.searchsorted(owner, np.arange(entries))
        self._starts = np.minimum(starts, max(0, self.count - 1))

    def __contains__(self, feature: str) -> bool:
        return feature in self._postings

    def best(self, weights: Iterable[tuple[str, float]]) -> npt.NDArray[np.float64]:
        """Every entry's best variant for `weights` (feature, weight) pairs, in entry order."""
        import numpy as np

        rows, values = [], []
        for feature, weight in weights:
            posting = self._postings.get(feature)
            if posting is not None:
                rows.append(posting[0])
                values.append(posting[1] if weight == 1.0 else posting[1] * weight)
        if not rows:
            return np.zeros(self.entries)
        similarity = np.bincount(
            np.concatenate(rows), weights=np.concatenate(values), minlength=self.count
        )
        result: npt.NDArray[np.float64] = np.maximum.reduceat(similarity, self._starts)
        if not self._every_entry_has_one:
            result = np.where(self._has_variant, result, 0.0)
        return result


class Recent(Generic[Key, Value]):
    """The last few results of a computation: a message is read as a few overlapping
    questions, each scored more than once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._kept: dict[Key, Value] = {}

    def get(self, key: Key, compute: Callable[[], Value]) -> Value:
        """The kept result for `key`, else `compute()` kept."""
        if key in self._kept:
            return self._kept[key]
        if len(self._kept) >= self.size:
            self._kept.clear()
        value = self._kept[key] = compute()
        return value

    def clear(self) -> None:
        """Forget every kept result."""
        self._kept.clear()
