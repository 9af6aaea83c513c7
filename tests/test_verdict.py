"""Yes or no first: a closed question that quotes a figure, checked against its answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.knowledge import KnowledgeBase, KnowledgeError
from bot.knowledge.cues import parse_language
from bot.knowledge.verdict import Verdicts

ROOT = Path(__file__).resolve().parent.parent
WORDS = {"it": {"yes": "Sì", "no": "No"}, "en": {"yes": "Yes", "no": "No"}}
SCALES = {"k": 1e3, "mila": 1e3, "million": 1e6, "milioni": 1e6, "miliardi": 1e9}
VERDICTS = Verdicts(WORDS, SCALES, frozenset({("more", "than")}), frozenset({"percent"}))


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load(ROOT / "config")


@pytest.mark.parametrize(
    ("text", "figures"),
    [
        ("Can we request 750 000?", {"amount:750000"}),
        ("500k max?", {"amount:500000"}),
        ("6 miliardi?", {"amount:6e+09"}),
        ("Is it 75 percent?", {"percent:75"}),
        ("Was it at 5 pm?", {"time:17:00"}),
        ("La scadenza era il 3 febbraio 2021?", {"date:3-2"}),
        ("Is the deadline February 2nd?", {"date:2-2"}),
        # A year alone, a number inside a code and a list's numbering are no figures.
        ("Is the 2020 call open?", set()),
        ("ESCP-4x?", set()),
        ("1) the objective, 2 - the budget", set()),
    ],
)
def test_figures_are_read_with_their_unit(text: str, figures: set[str]) -> None:
    assert VERDICTS.figures(text) == figures


def test_the_answer_s_figures_settle_the_question() -> None:
    answer = "Each project can receive at most EUR 500,000."
    assert VERDICTS.prefixed("Can we request 750 000?", answer, "en").startswith("No: each")
    assert VERDICTS.prefixed("Is the maximum 500k?", answer, "en").startswith("Yes: each")
    # A comparison is not settled by finding the figure, nor a question without one.
    assert VERDICTS.prefixed("More than 500 000?", answer, "en") == answer
    assert VERDICTS.prefixed("Is there a maximum?", answer, "en") == answer
    # An answer that already gives its verdict keeps it.
    assert VERDICTS.prefixed("Is it 750 000?", "No: at most 500 000.", "en").count("No") == 1


def test_a_bare_hour_or_number_matches_the_time_or_rate_stated() -> None:
    answer = "La scadenza era il 2 febbraio 2021, ore 17:00; il tasso è del 75 %."
    assert VERDICTS.verdict("Era alle 17?", answer) == "yes"
    assert VERDICTS.verdict("Is it 75 percent?", answer) == "yes"
    assert VERDICTS.verdict("Era il 3 febbraio?", answer) == "no"


def test_a_closed_question_on_a_figure_gets_yes_or_no_first(kb: KnowledgeBase) -> None:
    assert kb.answer("Can we request 750 000 for our project?").text.startswith("No: ")
    assert kb.answer("La scadenza era alle 17:00?", "it").text.startswith("Sì: ")
    # A question that only shares the figure gets no verdict it did not ask for.
    wider = kb.answer("Does the 75 % rate apply to in-kind contributions from partners too?")
    assert not wider.text.startswith(("Yes", "No:"))


def test_verdict_words_must_be_given_for_both_answers(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "config" / "language.yaml").read_text(encoding="utf-8"))
    data["verdicts"]["it"] = {"yes": "Sì"}
    with pytest.raises(KnowledgeError, match=r"verdicts\.it"):
        parse_language(data, tmp_path / "language.yaml")
