"""The shipped FAQ: every answer renders in both languages and states only the call's facts."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from bot.knowledge.facts import LANGUAGES, Call, load_call
from bot.knowledge.faq import FaqEntry, load_faq, render_answer, source_links
from tests.knowledge_support import REQUIRED_IDS

ROOT = Path(__file__).resolve().parent.parent
BRUSSELS = ZoneInfo("Europe/Brussels")
DEADLINE = datetime(2021, 2, 2, 17, 0, tzinfo=BRUSSELS)
# A fixed "today", long after the deadline, as when this project was written.
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=ZoneInfo("UTC"))


@pytest.fixture(scope="module")
def call() -> Call:
    return load_call(ROOT / "config" / "call.yaml")


@pytest.fixture(scope="module")
def entries(call: Call) -> dict[str, FaqEntry]:
    return {entry.id: entry for entry in load_faq(ROOT / "config" / "faq.yaml", call)}


def render(entries: dict[str, FaqEntry], call: Call, faq_id: str, lang: str, now: datetime) -> str:
    return render_answer(entries[faq_id], call, lang, now)


def with_dates(call: Call, opening: datetime, deadline: datetime) -> Call:
    """The call with other opening and deadline dates (the same facts otherwise)."""
    facts = dict(call.facts)
    facts["opening"] = dataclasses.replace(facts["opening"], value=opening.date())
    facts["deadline"] = dataclasses.replace(facts["deadline"], value=deadline)
    return dataclasses.replace(call, facts=facts)


# --- shape of the FAQ ---------------------------------------------------------------------------


def test_required_ids_and_rich_variants(entries: dict[str, FaqEntry]) -> None:
    assert set(REQUIRED_IDS) <= set(entries)
    for entry in entries.values():
        assert entry.topic in REQUIRED_IDS, entry.id
        main = entry.id == entry.topic
        for lang in LANGUAGES:
            questions = entry.questions[lang]
            # A topic's main entry covers many phrasings; a claim or an unconfirmed point few.
            assert len(questions) >= (8 if main else 3), (entry.id, lang)
            assert len(set(questions)) == len(questions), (entry.id, lang)
            assert entry.keywords[lang], (entry.id, lang)
            if main:
                assert 0 < len(entry.label[lang]) <= 30, (entry.id, lang)


def test_unconfirmed_points_are_entries_that_say_so(entries: dict[str, FaqEntry]) -> None:
    """call-facts.md's "not confirmed" points each have an entry whose answer says so."""
    unconfirmed = [entry for entry in entries.values() if not entry.confirmed]
    assert len(unconfirmed) >= 8
    call = load_call(ROOT / "config" / "call.yaml")
    for entry in unconfirmed:
        assert "conferm" in render_answer(entry, call, "it", NOW).casefold(), entry.id
        assert "confirm" in render_answer(entry, call, "en", NOW).casefold(), entry.id


def test_answer_templates_hard_code_no_figures() -> None:
    """Numbers and dates come from call.yaml: the template text outside Jinja has no digits."""
    data: Any = yaml.safe_load((ROOT / "config" / "faq.yaml").read_text(encoding="utf-8"))
    for raw in data["entries"]:
        for lang in LANGUAGES:
            text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", raw["answer"][lang], flags=re.S)
            assert not re.search(r"\d", text), (raw["id"], lang, text)


# --- every answer renders and carries its fact ----------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_answer_renders_as_plain_text_ending_with_its_sources(
    entries: dict[str, FaqEntry], call: Call, lang: str
) -> None:
    label = {"it": "Fonte", "en": "Source"}[lang]
    for faq_id, entry in entries.items():
        text = render(entries, call, faq_id, lang, NOW)
        links = source_links(entry, call.facts)
        assert links, faq_id
        assert text.endswith(f"\n\n{label}: {' ; '.join(links)}"), (faq_id, text)
        body = text.rsplit("\n\n", 1)[0]
        assert len(body) > 20, faq_id
        # Plain text: the channel adapters escape for their markup; no HTML or Markdown here.
        assert not re.search(r"[<>*_`]|\]\(", body), (faq_id, body)
        assert "{{" not in text and "{%" not in text, faq_id
        assert "  " not in body, (faq_id, body)


FIGURES = {
    ("budget", "it"): ["6.000.000 EUR", "12", "500.000 EUR"],
    ("budget", "en"): ["EUR 6,000,000", "12", "EUR 500,000"],
    ("max-grant", "it"): ["500.000 EUR"],
    ("max-grant", "en"): ["EUR 500,000"],
    ("funded-proposals", "it"): ["12 proposte"],
    ("funded-proposals", "en"): ["12 proposals"],
    ("funding-rate", "it"): ["75%", "costi ammissibili"],
    ("funding-rate", "en"): ["75%", "eligible costs"],
    ("deadline", "it"): ["2 febbraio 2021, ore 17:00", "Bruxelles", "chiuso"],
    ("deadline", "en"): ["2 February 2021, 17:00", "Brussels time", "closed"],
    ("how-to-apply", "it"): ["cos-cluster-2020-3-03", "clustercollaboration.eu"],
    ("how-to-apply", "en"): ["cos-cluster-2020-3-03", "clustercollaboration.eu"],
    ("programme", "it"): ["COS-CLUSTER-2020-3-03", "COSME", "EASME"],
    ("programme", "en"): ["COS-CLUSTER-2020-3-03", "COSME", "EASME"],
    ("objective", "it"): ["ClusterXchange", "PMI"],
    ("objective", "en"): ["ClusterXchange", "SME"],
    ("specific-objective", "it"): ["professionalizzazione"],
    ("specific-objective", "en"): ["professionalisation"],
    ("activities", "it"): ["• ", "ClusterXchange"],
    ("activities", "en"): ["• ", "ClusterXchange"],
    ("clusterxchange", "it"): ["3 giorni lavorativi", "1 mese", "clustercollaboration.eu"],
    ("clusterxchange", "en"): ["3 working days", "1 month", "clustercollaboration.eu"],
    ("eligibility", "it"): ["ECCP", "clustercollaboration.eu"],
    ("eligibility", "en"): ["ECCP", "clustercollaboration.eu"],
    ("countries", "it"): ["Islanda", "Ucraina", "Macedonia del Nord", "britannici"],
    ("countries", "en"): ["Iceland", "Ukraine", "North Macedonia", "British"],
    ("contact", "it"): ["/contact", "segreteria"],
    ("contact", "en"): ["/contact", "secretariat"],
}


@pytest.mark.parametrize(("faq_id", "lang"), sorted(FIGURES))
def test_answer_carries_its_facts(
    entries: dict[str, FaqEntry], call: Call, faq_id: str, lang: str
) -> None:
    text = render(entries, call, faq_id, lang, NOW)
    for figure in FIGURES[faq_id, lang]:
        assert figure in text, (faq_id, lang, figure, text)


def test_every_required_id_has_a_figure_check() -> None:
    assert {faq_id for faq_id, _ in FIGURES} == set(REQUIRED_IDS)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_budget_is_six_million_never_six_billion(
    entries: dict[str, FaqEntry], call: Call, lang: str
) -> None:
    for faq_id in entries:
        text = render(entries, call, faq_id, lang, NOW)
        for wrong in ("6.000.000.000", "6,000,000,000", "6 000 000 000", "miliard", "billion"):
            assert wrong not in text, (faq_id, lang)


def _allowed_numbers(call: Call, lang: str) -> set[str]:
    """Every number the facts print in `lang` (amounts, dates, times, counts, percentages)."""
    allowed: set[str] = set()
    for fact in call.facts.values():
        shown = fact.display(lang)
        allowed.update(re.findall(r"\d[\d.,]*\d|\d", shown))
        for source in fact.sources:
            allowed.update(re.findall(r"\d+", source))
    return allowed


@pytest.mark.parametrize("lang", LANGUAGES)
def test_answers_state_no_figure_outside_the_facts(
    entries: dict[str, FaqEntry], call: Call, lang: str
) -> None:
    """No invented consortium size, duration or amount: every number comes from a fact."""
    allowed = _allowed_numbers(call, lang)
    for faq_id in entries:
        text = render(entries, call, faq_id, lang, NOW)
        text = re.sub(r"https?://\S+", "", text)
        for number in re.findall(r"\d[\d.,]*\d|\d", text):
            assert number.rstrip(".,") in allowed, (faq_id, lang, number, text)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_unconfirmed_facts_are_not_stated(
    entries: dict[str, FaqEntry], call: Call, lang: str
) -> None:
    words = {
        "it": ("almeno 3", "criteri di aggiudicazione", "durata del progetto", "mesi"),
        "en": ("at least 3", "award criteria", "project duration", "months"),
    }[lang]
    for faq_id, entry in entries.items():
        if not entry.confirmed:
            continue  # these say the point is not confirmed (and what an earlier edition said)
        text = render(entries, call, faq_id, lang, NOW).casefold()
        for word in words:
            assert word not in text, (faq_id, lang, word)


def test_contact_answer_names_the_configured_address(
    entries: dict[str, FaqEntry], call: Call
) -> None:
    extra = {"secretariat_email": "cluster@example.eu"}
    for lang in LANGUAGES:
        plain = render_answer(entries["contact"], call, lang, NOW)
        named = render_answer(entries["contact"], call, lang, NOW, extra)
        assert "cluster@example.eu" not in plain
        assert "cluster@example.eu" in named
        assert "/contact" in named


# --- the deadline answer computes the call's status ---------------------------------------------


@pytest.mark.parametrize(
    ("now", "lang", "expected"),
    [
        (DEADLINE - timedelta(seconds=1), "en", "The call is open."),
        (DEADLINE - timedelta(seconds=1), "it", "Il bando è aperto."),
        (DEADLINE - timedelta(seconds=1), "en", "it closes today"),
        (DEADLINE - timedelta(seconds=1), "it", "scade oggi"),
        (DEADLINE, "en", "it closed on 2 February 2021, 17:00 Brussels time"),
        (DEADLINE, "it", "ha chiuso il 2 febbraio 2021, ore 17:00 (ora di Bruxelles)"),
        (DEADLINE + timedelta(seconds=1), "en", "The call is closed"),
        (DEADLINE + timedelta(seconds=1), "it", "Il bando è chiuso"),
        (DEADLINE - timedelta(days=1), "en", "1 day left"),
        (DEADLINE - timedelta(days=1), "it", "manca 1 giorno"),
        (DEADLINE - timedelta(days=30), "en", "30 days left"),
        (DEADLINE - timedelta(days=30), "it", "mancano 30 giorni"),
        (datetime(2020, 11, 2, 12, 0, tzinfo=BRUSSELS), "en", "it opens on 3 November 2020"),
        (datetime(2020, 11, 2, 12, 0, tzinfo=BRUSSELS), "it", "apre il 3 novembre 2020"),
        (NOW, "en", "The call is closed: it closed on 2 February 2021, 17:00 Brussels time."),
        (NOW, "it", "Il bando è chiuso: ha chiuso il 2 febbraio 2021, ore 17:00"),
    ],
)
def test_deadline_status_around_the_boundary(
    entries: dict[str, FaqEntry], call: Call, now: datetime, lang: str, expected: str
) -> None:
    text = render(entries, call, "deadline", lang, now)
    assert expected in text, text


def test_deadline_boundary_is_brussels_time_not_utc(
    entries: dict[str, FaqEntry], call: Call
) -> None:
    # 16:30 UTC is 17:30 in Brussels (CET, UTC+1): already closed.
    late = datetime(2021, 2, 2, 16, 30, tzinfo=ZoneInfo("UTC"))
    assert "closed" in render(entries, call, "deadline", "en", late)
    early = datetime(2021, 2, 2, 15, 59, tzinfo=ZoneInfo("UTC"))
    assert "The call is open." in render(entries, call, "deadline", "en", early)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_future_deadline_gives_days_left(
    entries: dict[str, FaqEntry], call: Call, lang: str
) -> None:
    future = with_dates(
        call,
        opening=datetime(2026, 11, 1, tzinfo=BRUSSELS),
        deadline=datetime(2026, 12, 10, 17, 0, tzinfo=BRUSSELS),
    )
    text = render(entries, future, "deadline", lang, NOW)
    expected = {"en": "14 days left", "it": "mancano 14 giorni"}[lang]
    assert expected in text, text
    assert {"en": "10 December 2026, 17:00", "it": "10 dicembre 2026, ore 17:00"}[lang] in text
    how = render(entries, future, "how-to-apply", lang, NOW)
    assert "2021" not in how  # no "closed on" note while the call is open


def test_how_to_apply_mentions_the_closing_only_when_closed(
    entries: dict[str, FaqEntry], call: Call
) -> None:
    assert "the call closed on 2 February 2021" in render(entries, call, "how-to-apply", "en", NOW)
    before = DEADLINE - timedelta(days=3)
    assert "closed" not in render(entries, call, "how-to-apply", "en", before)
