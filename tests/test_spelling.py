"""The speller: the likeliest repair of an unknown word, not merely the first one found."""

from __future__ import annotations

from bot.knowledge.spelling import Speller


def speller(frequency: dict[str, int]) -> Speller:
    """A speller over `frequency`'s words, with no other known or indexed words."""
    return Speller(frequency, frozenset(), lambda word: False)


def test_a_left_out_letter_beats_a_changed_one() -> None:
    spell = speller({"tool": 9, "total": 1, "punti": 9, "quanti": 1})
    assert spell.correct("totl") == "total"
    assert spell.correct("qunti") == "quanti"


def test_among_equally_likely_repairs_the_more_written_word_wins() -> None:
    assert speller({"budget": 5, "buffet": 1}).correct("bufget") == "budget"
    assert speller({"budget": 1, "buffet": 5}).correct("bufget") == "buffet"


def test_known_short_and_far_words_are_left_alone() -> None:
    spell = Speller({"budget": 1}, frozenset({"budgie"}), lambda word: False)
    assert spell.correct("budgie") == "budgie"
    assert spell.correct("bud") == "bud"
    assert spell.correct("bridges") == "bridges"
