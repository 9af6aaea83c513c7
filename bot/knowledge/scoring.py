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
    variants' vectors (vectors and weights are never negative)."""

    def __init__(self, variants: Sequence[tuple[int, Mapping[str, float]]], entries: int) -> None:
        """Index `variants`, (entry index, feature -> value) pairs, of `entries` entries."""
        import numpy as np

        self.entries = entries
        self.count = len(variants)
        # Row k of a (width x entries) array holds every entry's k-th variant, so the
        # per-entry maximum is one max down the columns, a loop over whole rows in C: a
        # segmented reduction (reduceat, or max along short rows) pays per entry and costs
        # several times more. Variants beyond an entry's `width` go to slots after the array,
        # grouped by entry. An empty slot scores 0, no more than any variant (never negative).
        sizes = np.bincount(
            np.array([entry for entry, _ in variants], dtype=np.int64), minlength=entries
        )
        self._width = max(1, int(np.median(sizes[sizes > 0]))) if self.count else 1
        extra: list[tuple[int, Mapping[str, float]]] = []
        slots: list[tuple[int, Mapping[str, float]]] = []
        used = [0] * entries
        for entry, vector in sorted(variants, key=lambda variant: variant[0]):
            if used[entry] < self._width:
                slots.append((used[entry] * entries + entry, vector))
                used[entry] += 1
            else:
                extra.append((entry, vector))
        base = entries * self._width
        slots.extend((base + at, vector) for at, (_, vector) in enumerate(extra))
        self._slots = base + len(extra)
        self._postings = Postings(slots)
        extra_owner = np.array([entry for entry, _ in extra], dtype=np.int64)
        # Where each entry's run of extra slots starts, as one segmented maximum over them.
        starts = np.flatnonzero(np.diff(extra_owner, prepend=-1)) if len(extra) else extra_owner
        self._extra_starts = base + starts
        self._extra_owners = extra_owner[starts] if len(extra) else extra_owner

    def __contains__(self, feature: str) -> bool:
        return feature in self._postings

    def best(self, weights: Iterable[tuple[str, float]]) -> npt.NDArray[np.float64]:
        """Every entry's best variant for `weights` (feature, weight) pairs, in entry order."""
        import numpy as np

        rows, values, _ = self._postings.gather(weights)
        if not len(rows):
            return np.zeros(self.entries)
        similarity = np.bincount(rows, weights=values, minlength=self._slots)
        base = self.entries * self._width
        result: npt.NDArray[np.float64] = (
            similarity[:base].reshape(self._width, self.entries).max(axis=0)
        )
        if len(self._extra_owners):
            extra = np.maximum.reduceat(similarity, self._extra_starts)
            result[self._extra_owners] = np.maximum(result[self._extra_owners], extra)
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
