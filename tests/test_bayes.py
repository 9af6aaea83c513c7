"""The naive Bayes view of a question (bot/knowledge/bayes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.knowledge import KnowledgeBase
from bot.knowledge.bayes import PIECE_MARK, EntryModel, features

ROOT = Path(__file__).resolve().parent.parent

# Two entries of a made-up call, each described by its variants' weighted terms.
VARIANTS = [
    (0, {"closing": 1.0, "date": 1.0}),
    (0, {"deadline": 1.0, "submission": 1.0}),
    (0, {"deadline": 1.0, "hour": 1.0}),
    (1, {"total": 1.0, "budget": 1.0}),
    (1, {"money": 1.0, "budget": 1.0, "date": 0.5}),
]


def test_an_entry_whose_variants_share_the_words_is_the_most_probable() -> None:
    # No single variant holds "closing", "deadline" and "hour"; together entry 0's do.
    model = EntryModel(VARIANTS, 2)
    found = model.posterior([("closing", 1.0), ("deadline", 1.0), ("hour", 1.0)])
    assert found[0] > 0.9
    assert found.sum() == pytest.approx(1.0)


def test_a_word_both_entries_hold_leans_to_the_one_that_uses_it_more() -> None:
    model = EntryModel(VARIANTS, 2)
    found = model.posterior([("date", 1.0)])
    assert found[0] > found[1] > 0


def test_features_no_variant_holds_are_left_out() -> None:
    model = EntryModel(VARIANTS, 2)
    assert not model.posterior([("zorblax", 1.0)]).any()
    with_unknown = model.posterior([("budget", 1.0), ("zorblax", 1.0)])
    assert with_unknown == pytest.approx(model.posterior([("budget", 1.0)]))


def test_an_entry_without_variants_is_never_probable() -> None:
    model = EntryModel(VARIANTS, 3)
    assert model.posterior([("budget", 1.0)])[2] == 0


def test_features_mark_pieces_apart_from_terms() -> None:
    found = features({"bud": 0.7}, ["budget"])
    assert found["bud"] == 0.7
    pieces = [key for key in found if key.startswith(PIECE_MARK)]
    # The 4-character pieces, word ends marked by a space.
    assert {PIECE_MARK + " bud", PIECE_MARK + "budg", PIECE_MARK + "get "} <= set(pieces)
    assert all(len(key) == len(PIECE_MARK) + 4 for key in pieces)
    # The pieces weigh 1 together (unit length), whatever the number of words.
    assert sum(found[key] ** 2 for key in pieces) == pytest.approx(1.0)


def test_pieces_most_entries_hold_are_left_out_of_a_question() -> None:
    # " cal" is in every entry's variants; "call" as a term is kept all the same.
    variants = [
        (entry, features({"call": 1.0, f"t{entry}": 1.0}, ["call", f"w{entry}x"]))
        for entry in range(4)
    ]
    model = EntryModel(variants, 4)
    assert not model.posterior([(PIECE_MARK + " cal", 1.0)]).any()
    assert model.posterior([("call", 1.0)]).any()
    assert model.posterior([(PIECE_MARK + " w2x", 1.0)]).argmax() == 2


@given(
    st.lists(
        st.tuples(st.sampled_from(["date", "budget", "hour", "x", ""]), st.floats(0, 5)),
        max_size=8,
    )
)
def test_the_posterior_is_a_distribution_or_nothing(weights: list[tuple[str, float]]) -> None:
    found = EntryModel(VARIANTS, 3).posterior(weights)
    assert len(found) == 3
    assert ((found >= 0) & (found <= 1.0 + 1e-9)).all()
    assert found.sum() == pytest.approx(1.0) or not found.any()


def test_the_view_reads_a_topic_from_words_its_variants_use_together() -> None:
    # "vengono" is in no variant of the topic ("verranno", "saranno"), and the words are
    # misspelt: the words its variants use between them still point to it.
    kb = KnowledgeBase.load(ROOT / "config")
    query = kb.matcher.query("quanti progeti vengono finanziatti", "it")
    posterior = kb.matcher.posterior(query)
    assert kb.matcher.documents[int(posterior.argmax())].group == "funded-proposals"
    assert posterior.sum() == pytest.approx(1.0)


def test_the_shipped_knowledge_base_uses_the_bayes_view() -> None:
    kb = KnowledgeBase.load(ROOT / "config")
    assert kb.matcher.tuning.bayes_weight == kb.faq.matching["bayes_weight"] > 0
