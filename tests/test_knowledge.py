"""Knowledge base loading: precise errors per class of mistake, and the call status logic."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from bot.knowledge import KnowledgeBase, KnowledgeError
from bot.knowledge.facts import load_call
from bot.knowledge.render import call_status
from tests.knowledge_support import REQUIRED_IDS

BRUSSELS = ZoneInfo("Europe/Brussels")


@pytest.fixture
def kb_dir(tmp_path: Path, repo_root: Path) -> Path:
    """A writable copy of the shipped knowledge base."""
    target = tmp_path / "kb"
    target.mkdir()
    for name in ("call.yaml", "faq.yaml"):
        shutil.copy(repo_root / "config" / name, target / name)
    return target


def edit_yaml(path: Path, change: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def faq_entries(data: Any) -> list[dict[str, Any]]:
    return data["entries"] if isinstance(data, dict) else data


def entry(data: Any, faq_id: str) -> dict[str, Any]:
    return next(e for e in faq_entries(data) if e["id"] == faq_id)


def load_problems(directory: Path) -> list[str]:
    with pytest.raises(KnowledgeError) as caught:
        KnowledgeBase.load(directory)
    return caught.value.problems


def test_shipped_knowledge_base_loads(repo_root: Path) -> None:
    kb = KnowledgeBase.load(repo_root / "config")
    assert kb.call.id == "COS-CLUSTER-2020-3-03"
    assert set(REQUIRED_IDS) <= set(kb.by_id)
    assert all(label for _, label in kb.topics("it"))


def test_missing_required_id(kb_dir: Path) -> None:
    faq = kb_dir / "faq.yaml"

    def drop_budget(data: Any) -> None:
        entries = faq_entries(data)
        entries.remove(entry(data, "budget"))

    edit_yaml(faq, drop_budget)
    assert load_problems(kb_dir) == [f"{faq}: required entry 'budget' is missing"]


def test_template_error_names_file_and_entry(kb_dir: Path) -> None:
    faq = kb_dir / "faq.yaml"
    edit_yaml(
        faq, lambda data: entry(data, "budget")["answer"].update(en="Budget: {{ budget|money }")
    )
    (problem,) = load_problems(kb_dir)
    assert problem.startswith(f"{faq}: entry 'budget': answer.en: template error on line 1")


def test_unknown_filter_is_found_when_the_file_is_read(kb_dir: Path) -> None:
    """Answers compile on first use, but a filter that does not exist is reported at load."""
    faq = kb_dir / "faq.yaml"
    edit_yaml(faq, lambda data: entry(data, "budget")["answer"].update(en="{{ budget|monye }}"))
    assert load_problems(kb_dir) == [
        f"{faq}: entry 'budget': answer.en: template error on line 1: No filter named 'monye'."
    ]


def test_unknown_fact_name(kb_dir: Path) -> None:
    faq = kb_dir / "faq.yaml"
    edit_yaml(
        faq, lambda data: entry(data, "max-grant")["answer"].update(it="{{ max_grnt|money }}")
    )
    assert load_problems(kb_dir) == [
        f"{faq}: entry 'max-grant': answer.it: unknown fact 'max_grnt' (not in call.yaml)"
    ]


def test_unknown_source_fact(kb_dir: Path) -> None:
    faq = kb_dir / "faq.yaml"
    edit_yaml(faq, lambda data: entry(data, "deadline").update(sources=["deadlines"]))
    assert load_problems(kb_dir) == [
        f"{faq}: entry 'deadline': sources: unknown fact 'deadlines' (not in call.yaml)"
    ]


def test_missing_translation(kb_dir: Path) -> None:
    faq = kb_dir / "faq.yaml"
    edit_yaml(faq, lambda data: entry(data, "funding-rate")["answer"].pop("en"))
    assert load_problems(kb_dir) == [
        f"{faq}: entry 'funding-rate': missing 'en' translation of 'answer'"
    ]


def test_every_problem_at_once(kb_dir: Path) -> None:
    faq = kb_dir / "faq.yaml"

    def break_two(data: Any) -> None:
        entry(data, "funding-rate")["questions"].pop("it")
        entry(data, "budget")["answer"]["it"] = "{{ nope }}"

    edit_yaml(faq, break_two)
    problems = load_problems(kb_dir)
    assert len(problems) == 2
    assert any("'funding-rate': missing 'it' translation of 'questions'" in p for p in problems)
    assert any("'budget': answer.it: unknown fact 'nope'" in p for p in problems)


def test_call_file_errors_name_the_fact(kb_dir: Path) -> None:
    call = kb_dir / "call.yaml"

    def break_call(data: Any) -> None:
        data["facts"]["budget"]["value"] = "six million"
        data["facts"]["deadline"]["value"]["timezone"] = "Europe/Bruxelles"
        data["facts"]["opening"]["sources"] = []

    edit_yaml(call, break_call)
    problems = load_problems(kb_dir)
    assert f"{call}: fact 'budget': must be {{amount: <whole number>, currency: EUR}}" in problems
    assert f"{call}: fact 'deadline'.timezone: unknown time zone 'Europe/Bruxelles'" in problems
    assert (
        f"{call}: fact 'opening': 'sources' must list at least one link that confirms it"
        in problems
    )


def test_missing_folder_and_bad_yaml(tmp_path: Path, kb_dir: Path) -> None:
    assert "knowledge folder not found" in load_problems(tmp_path / "absent")[0]
    (kb_dir / "faq.yaml").write_text("- id: [unclosed\n", encoding="utf-8")
    (problem,) = load_problems(kb_dir)
    assert problem.startswith(f"{kb_dir / 'faq.yaml'}: not valid YAML")


def test_budget_is_six_million_not_six_billion(repo_root: Path) -> None:
    call = load_call(repo_root / "config" / "call.yaml")
    assert call.facts["budget"].value.amount == 6_000_000
    assert call.facts["max_grant"].value.amount == 500_000
    assert call.facts["expected_grants"].value == 12
    assert call.facts["funding_rate"].value == 75
    assert call.facts["budget"].display("it") == "6.000.000 EUR"
    assert call.facts["budget"].display("en") == "EUR 6,000,000"


def test_deadline_boundary_in_brussels_time(repo_root: Path) -> None:
    call = load_call(repo_root / "config" / "call.yaml")
    deadline = datetime(2021, 2, 2, 17, 0, tzinfo=BRUSSELS)
    assert call.deadline == deadline
    before = call_status(call, deadline - timedelta(seconds=1))
    at = call_status(call, deadline)
    after = call_status(call, deadline + timedelta(seconds=1))
    assert (before.call_open, at.call_open, after.call_open) == (True, False, False)
    # 17:00 Brussels is 16:00 UTC in winter: 16:30 UTC is already closed.
    assert not call_status(call, datetime(2021, 2, 2, 16, 30, tzinfo=UTC)).call_open
    assert call_status(call, datetime(2021, 2, 2, 15, 59, tzinfo=UTC)).call_open
    assert call_status(call, datetime(2021, 1, 31, 12, 0, tzinfo=BRUSSELS)).days_left == 2
    assert call_status(call, datetime(2020, 11, 1, tzinfo=BRUSSELS)).opening_ahead


@pytest.mark.parametrize(
    ("now", "lang", "expected"),
    [
        (datetime(2026, 11, 26, 10, 0, tzinfo=UTC), "en", "2 February 2021"),
        (datetime(2026, 11, 26, 10, 0, tzinfo=UTC), "it", "2 febbraio 2021"),
    ],
)
def test_deadline_answer_says_closed_today(
    repo_root: Path, now: datetime, lang: str, expected: str
) -> None:
    kb = KnowledgeBase.load(repo_root / "config")
    text = kb.render("deadline", lang, now)
    assert expected in text
    assert "17:00" in text


def test_deadline_answer_with_a_future_deadline_gives_days_left(kb_dir: Path) -> None:
    def move_deadline(data: Any) -> None:
        data["facts"]["deadline"]["value"]["at"] = "2027-01-10T17:00"

    edit_yaml(kb_dir / "call.yaml", move_deadline)
    kb = KnowledgeBase.load(kb_dir)
    now = datetime(2027, 1, 1, 9, 0, tzinfo=BRUSSELS)
    assert "9" in kb.render("deadline", "en", now)
    assert "9" in kb.render("deadline", "it", now)
    closed = kb.render("deadline", "en", datetime(2027, 1, 11, tzinfo=BRUSSELS))
    assert "10 January 2027" in closed
