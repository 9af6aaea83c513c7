"""The character-piece view of a question (bot/knowledge/chargrams.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bot.knowledge import KnowledgeBase
from bot.knowledge.chargrams import CharIndex, pieces

ROOT = Path(__file__).resolve().parent.parent

# Two entries of a made-up call, plus entries enough that pruning has something to prune.
VARIANTS = [
    (0, ("closing", "date", "submission")),
    (0, ("deadline", "proposals")),
    (1, ("total", "budget", "available")),
    (1, ("money", "budget", "overall")),
]


def test_pieces_mark_the_ends_of_each_word() -> None:
    found = pieces(["budget"])
    assert found == {" bud", "budg", "udge", "dget", "get "}
    # No piece crosses from one word into the next.
    assert not any("t c" in piece or "et c" in piece for piece in pieces(["budget", "call"]))


def test_a_misspelt_word_finds_its_entry_through_its_pieces() -> None:
    index = CharIndex(VARIANTS, 2)
    deadline = index.scores(["dedlline"])
    assert deadline[0] > 0 and deadline[1] == 0
    budget = index.scores(["buget", "overal"])
    assert budget[1] > budget[0]


def test_words_no_variant_holds_lower_the_score() -> None:
    index = CharIndex(VARIANTS, 2)
    alone = index.scores(["budget"])[1]
    diluted = index.scores(["budget", "zorblax", "quintessimo"])[1]
    assert 0 < diluted < alone <= 1.0 + 1e-9


def test_pieces_most_variants_share_are_left_out() -> None:
    # "call" in every one of many variants tells no entry from another.
    variants = [(entry, (f"w{entry}x{n}", "call")) for entry in range(30) for n in range(2)]
    index = CharIndex(variants, 30)
    assert not index.scores(["call"]).any()
    assert index.scores(["w7x1"])[7] > 0


def test_an_entry_without_variants_scores_nothing() -> None:
    index = CharIndex(VARIANTS, 3)
    assert index.scores(["budget"])[2] == 0
    assert not CharIndex([], 2).scores(["budget"]).any()


@given(st.lists(st.text(max_size=30), max_size=20))
def test_scores_stay_between_zero_and_one(words: list[str]) -> None:
    scores = CharIndex(VARIANTS, 2).scores(words)
    assert len(scores) == 2
    assert ((scores >= 0) & (scores <= 1.0 + 1e-9)).all()


def _ranking(char_weight: float, text: str) -> list[str]:
    kb = KnowledgeBase.load(ROOT / "config")
    # The naive Bayes view reads pieces too: left out, to compare words with pieces alone.
    kb.matcher.tuning = replace(kb.matcher.tuning, char_weight=char_weight, bayes_weight=0.0)
    return [ranked.id for ranked in kb.matcher.rank(text, "it", 3)]


def test_the_piece_view_ranks_a_word_misspelt_beyond_the_corrector() -> None:
    # "scadeee" is three edits from "scade": the word view does not know it; its pieces do.
    assert _ranking(0.0, "quando scadeee il bandooo")[0] != "deadline"
    assert _ranking(0.3, "quando scadeee il bandooo")[0] == "deadline"


def test_the_shipped_knowledge_base_uses_the_piece_view() -> None:
    kb = KnowledgeBase.load(ROOT / "config")
    assert kb.matcher.tuning.char_weight == kb.faq.matching["char_weight"] > 0
