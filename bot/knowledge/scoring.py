"""What the views of a question (words in match.py, character pieces in chargrams.py, naive
Bayes in bayes.py) score with: sparse postings, each entry's closest variant over them, and a
small store of recent results."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class Postings:
    """Per feature, the rows that hold it and their values, as slices of two arrays: built
    and read with a few array operations, not a few per feature."""

    def __init__(self, vectors: Iterable[tuple[int, Mapping[str, float]]]) -> None:
        """Index (row, feature -> value) pairs; the values of a row repeated add up."""
        import numpy as np

        names: list[str] = []
        values: list[float] = []
        owners: list[int] = []
        sizes: list[int] = []
        for row, vector in vectors:
            # Whole vectors at a time: the per-item work happens in C.
            names.extend(vector)
            values.extend(vector.values())
            owners.append(row)
            sizes.append(len(vector))
        # Numbered in order of first appearance, with the loops in C.
        self.ids: dict[str, int] = {name: at for at, name in enumerate(dict.fromkeys(names))}
        features = list(map(self.ids.__getitem__, names))
        row_array = np.repeat(np.array(owners, dtype=np.int64), sizes)
        span = int(row_array.max()) + 1 if len(row_array) else 1
        pairs, which = np.unique(
            np.array(features, dtype=np.int64) * span + row_array, return_inverse=True
        )
        self.values = np.bincount(which, weights=np.array(values, dtype=float))
        self.rows = pairs % span
        self.starts: list[int] = np.searchsorted(
            pairs // span, np.arange(len(self.ids) + 1)
        ).tolist()

    def __contains__(self, feature: str) -> bool:
        return feature in self.ids

    def holders(self, feature: str) -> int:
        """How many rows hold `feature`."""
        at = self.ids[feature]
        return self.starts[at + 1] - self.starts[at]

    def gather(
        self, weights: Iterable[tuple[str, float]]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], float]:
        """The rows and the weighted values of every posting of the known features of
        `weights`, (feature, weight) pairs, end to end, and the sum of their weights."""
        import numpy as np

        rows, values, lengths, scale = [], [], [], []
        for feature, weight in weights:
            found = self.ids.get(feature)
            if found is not None:
                start, end = self.starts[found], self.starts[found + 1]
                rows.append(self.rows[start:end])
                values.append(self.values[start:end])
                lengths.append(end - start)
                scale.append(weight)
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0), 0.0
        # Slices copy faster than an index array gathers; the weights apply in one product.
        weighted: npt.NDArray[np.float64] = np.concatenate(values)
        if any(weight != 1.0 for weight in scale):
            weighted *= np.repeat(np.array(scale), lengths)
        return np.concatenate(rows), weighted, float(sum(scale))


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
        self._postings = Postings((row, vector) for row, (_, vector) in enumerate(ordered))
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

        rows, values, _ = self._postings.gather(weights)
        if not len(rows):
            return np.zeros(self.entries)
        similarity = np.bincount(rows, weights=values, minlength=self.count)
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
