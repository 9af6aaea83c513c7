"""The sparse scoring parts of the knowledge base (bot/knowledge/scoring.py) against a
plain-Python reading of what they compute."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.knowledge.scoring import ClosestVariant, Postings

FEATURES = st.sampled_from([f"f{i}" for i in range(6)])
VECTOR = st.dictionaries(FEATURES, st.floats(0.0, 5.0), min_size=1, max_size=4)


def closest(
    variants: list[tuple[int, dict[str, float]]], entries: int, weights: dict[str, float]
) -> list[float]:
    """Per entry, the best dot product of `weights` with one of its variants, else 0."""
    best = [0.0] * entries
    for entry, vector in variants:
        score = sum(weight * vector.get(feature, 0.0) for feature, weight in weights.items())
        best[entry] = max(best[entry], score)
    return best


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 9).flatmap(
        lambda entries: st.tuples(
            st.just(entries),
            st.lists(st.tuples(st.integers(0, entries - 1), VECTOR), max_size=40),
        )
    ),
    st.dictionaries(st.sampled_from([f"f{i}" for i in range(8)]), st.floats(0.0, 3.0)),
)
def test_closest_variant_is_each_entries_best_dot_product(
    case: tuple[int, list[tuple[int, dict[str, float]]]], weights: dict[str, float]
) -> None:
    """Entries with many variants, with none, and at the end of the list all score right."""
    entries, variants = case
    index = ClosestVariant(variants, entries)
    found = index.best(weights.items()).tolist()
    expected = closest(variants, entries, weights)
    assert len(found) == entries
    assert all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(found, expected, strict=True))


def test_entries_with_more_variants_than_most_keep_their_best() -> None:
    """An entry with more variants than the usual count is scored on all of them."""
    variants = [(0, {"a": 1.0}), (0, {"b": 1.0}), (1, {"a": 0.5})] + [
        (0, {"c": float(i)}) for i in range(5)
    ]
    scores = ClosestVariant(variants, 3).best([("c", 2.0), ("b", 1.0)]).tolist()
    assert scores == [8.0, 0.0, 0.0]


def test_postings_add_up_repeated_values_of_a_row() -> None:
    """A feature a row lists twice counts once, with the values summed."""
    postings = Postings([(0, {"a": 1.0}), (1, {"a": 2.0}), (0, {"a": 0.5, "b": 1.0})])
    rows, values, mass = postings.gather([("a", 2.0), ("zz", 9.0)])
    assert sorted(zip(rows.tolist(), values.tolist(), strict=True)) == [(0, 3.0), (1, 4.0)]
    assert mass == 2.0
    assert postings.holders("a") == 2
