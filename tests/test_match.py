"""The FAQ matcher: dev-set accuracy, language detection, robustness, fallbacks, fuzzing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bot.knowledge import KnowledgeBase
from bot.knowledge.facts import load_call
from bot.knowledge.faq import FaqEntry, load_faq
from bot.knowledge.match import Matcher, detect_language

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
DEV_SET = DATA / "dev_questions.yaml"
# Blind sets: each written before a round of matcher changes and measured once before it (see
# their headers and docs); kept here as regression sets with looser thresholds than the dev set.
BLIND_SETS = tuple(sorted(DATA.glob("blind*_questions.yaml")))
THRESHOLD = 0.5  # the KnowledgeBase default (settings faq.min_score)


@dataclass(frozen=True)
class Item:
    q: str
    lang: str
    id: str | None
    typo: bool


def _load(path: Path = DEV_SET) -> list[Item]:
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [
        Item(str(row["q"]), str(row["lang"]), row.get("id"), bool(row.get("typo", False)))
        for row in data["questions"]
    ]


DEV = _load()


@pytest.fixture(scope="module")
def entries() -> tuple[FaqEntry, ...]:
    call = load_call(ROOT / "config" / "call.yaml")
    return load_faq(ROOT / "config" / "faq.yaml", call)


@pytest.fixture(scope="module")
def matcher(entries: tuple[FaqEntry, ...]) -> Matcher:
    return Matcher(entries)


@pytest.fixture(scope="module")
def ids(entries: tuple[FaqEntry, ...]) -> set[str]:
    return {entry.id for entry in entries}


def answer(matcher: Matcher, text: str) -> str | None:
    faq_id, score = matcher.best(text)
    return faq_id if score >= THRESHOLD else None


# --- the development set ------------------------------------------------------------------------


def test_dev_set_is_big_varied_and_labelled_with_real_ids(
    entries: tuple[FaqEntry, ...],
) -> None:
    ids = {entry.id for entry in entries}
    assert len(DEV) >= 200
    assert sum(item.id is None for item in DEV) >= 40
    assert sum(item.typo for item in DEV) >= 30
    assert {item.lang for item in DEV} == {"it", "en"}
    assert {item.id for item in DEV if item.id is not None} == ids
    assert len({item.q for item in DEV}) == len(DEV), "duplicate questions"
    # The dev set measures generalisation: none of its questions is a variant of the FAQ.
    variants = {
        " ".join(q.casefold().split())
        for entry in entries
        for lang in entry.questions
        for q in entry.questions[lang]
    }
    copied = [item.q for item in DEV if " ".join(item.q.casefold().split()) in variants]
    assert copied == []


def test_dev_set_in_scope_top1_accuracy_at_least_95_percent(matcher: Matcher) -> None:
    inside = [item for item in DEV if item.id is not None]
    misses = [(item.q, item.id, matcher.best(item.q)) for item in inside]
    misses = [miss for miss in misses if answer(matcher, miss[0]) != miss[1]]
    accuracy = 1 - len(misses) / len(inside)
    assert accuracy >= 0.95, f"accuracy {accuracy:.3f}; misses: {misses}"


def test_dev_set_fallback_at_least_90_percent(matcher: Matcher) -> None:
    outside = [item for item in DEV if item.id is None]
    wrong = [(item.q, matcher.best(item.q)) for item in outside if answer(matcher, item.q)]
    rate = 1 - len(wrong) / len(outside)
    assert rate >= 0.90, f"fallback {rate:.3f}; answered instead: {wrong}"


def test_dev_set_typos_are_mostly_understood(matcher: Matcher) -> None:
    typos = [item for item in DEV if item.typo and item.id is not None]
    right = sum(answer(matcher, item.q) == item.id for item in typos)
    assert right / len(typos) >= 0.9


# --- the blind sets ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", BLIND_SETS, ids=lambda path: path.stem)
def test_blind_set_is_varied_and_labelled_with_real_ids(path: Path, ids: set[str]) -> None:
    items = _load(path)
    assert len(items) >= 100
    assert {item.lang for item in items} == {"it", "en"}
    assert sum(item.id is None for item in items) >= 0.2 * len(items)
    assert {item.id for item in items if item.id is not None} <= ids
    assert len({item.q for item in items}) == len(items), "duplicate questions"
    # Written independently, a blind set shares a few short common questions ("ciao",
    # "who can apply?") with the dev set and the FAQ variants: they are kept as written.


@pytest.mark.parametrize("path", BLIND_SETS, ids=lambda path: path.stem)
def test_blind_set_in_scope_at_least_90_and_fallback_at_least_85_percent(
    matcher: Matcher, path: Path
) -> None:
    items = _load(path)
    inside = [item for item in items if item.id is not None]
    outside = [item for item in items if item.id is None]
    misses = [(item.q, item.id, matcher.best(item.q)) for item in inside]
    misses = [miss for miss in misses if answer(matcher, miss[0]) != miss[1]]
    wrong = [(item.q, matcher.best(item.q)) for item in outside if answer(matcher, item.q)]
    accuracy = 1 - len(misses) / len(inside)
    rate = 1 - len(wrong) / len(outside)
    assert accuracy >= 0.90, f"accuracy {accuracy:.3f}; misses: {misses}"
    assert rate >= 0.85, f"fallback {rate:.3f}; answered instead: {wrong}"


def test_knowledge_base_applies_the_same_threshold() -> None:
    kb = KnowledgeBase.load(ROOT / "config")
    sample = DEV[::7]
    for item in sample:
        faq_id, score = kb.match(item.q)
        assert 0.0 <= score <= 1.0
        assert faq_id == answer(kb.matcher, item.q)


# --- language detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Qual è il budget del bando?", "it"),
        ("quanti progetti saranno finanziati", "it"),
        ("Chi può partecipare?", "it"),
        ("scadenza?", "it"),
        ("il budget", "it"),
        ("What is the deadline for proposals?", "en"),
        ("how many projects will be funded", "en"),
        ("Who can apply?", "en"),
        ("deadline?", "en"),
        ("the budget", "en"),
        ("budget?", None),
        ("ClusterXchange", None),
        ("COSME", None),
        ("ECCP?", None),
        ("", None),
        ("   ", None),
        ("12345", None),
        ("🙂🙂", None),
    ],
)
def test_detect_language(text: str, expected: str | None) -> None:
    assert detect_language(text) == expected


# --- robustness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # short forms and bare keywords
        ("budget?", "budget"),
        ("deadline?", "deadline"),
        ("scadenza?", "deadline"),
        ("eligibility?", "eligibility"),
        ("clusterxchange", "clusterxchange"),
        ("contatti", "contact"),
        ("max grant", "max-grant"),
        # case and accents
        ("QUAL È LA SCADENZA DEL BANDO?", "deadline"),
        ("qual e la scadenza del bando", "deadline"),
        ("attivita finanziabili", "activities"),
        ("CHI PUÒ PARTECIPARE", "eligibility"),
        # word order
        ("bando scadenza qual è", "deadline"),
        ("grant maximum per project what is", "max-grant"),
        # typos
        ("qual'è la scadenzza?", "deadline"),
        ("waht is the buget", "budget"),
        ("how many projcets will be fundded", "funded-proposals"),
        ("percentuale di cofinanzamento", "funding-rate"),
        ("clusterexchange", "clusterxchange"),
        # abbreviations and spelling variants
        ("UK applicants?", "countries"),
        ("co-financing rate", "funding-rate"),
        ("e-mail della segreteria", "contact"),
        ("ECCP registration", "eligibility"),
        ("CXC?", "clusterxchange"),
        ("is it a one-stage or two-stage submission?", "how-to-apply"),
        # country names and nationalities
        ("can a Turkish cluster join?", "countries"),
        ("anche le organizzazioni serbe?", "countries"),
        ("what about applicants from North Macedonia?", "countries"),
        # money topics: total, per project, share of costs, number of grants
        ("how much money is there in total?", "budget"),
        ("quanto c'e sul piatto", "budget"),
        ("how much money can we get?", "max-grant"),
        ("quanti soldi per progetto?", "max-grant"),
        ("how much do we have to pay ourselves?", "funding-rate"),
        ("how many projects will get money?", "funded-proposals"),
        ("how many grants in total?", "funded-proposals"),
        # intent words, not the applicant's context, decide
        (
            "Good morning, I'm the manager of a textile cluster in northern Portugal and we are "
            "thinking about submitting a proposal with two other clusters. Could you tell me "
            "what the deadline is?",
            "deadline",
        ),
        (
            "Buonasera, sono la responsabile di un cluster agroalimentare in Emilia, volevo "
            "capire quale percentuale dei costi viene coperta dal contributo europeo",
            "funding-rate",
        ),
        ("is the call open to universities?", "eligibility"),
        ("what exactly is funded", "activities"),
    ],
)
def test_robust_matching(matcher: Matcher, text: str, expected: str) -> None:
    assert answer(matcher, text) == expected, matcher.best(text)


@pytest.mark.parametrize(
    "text",
    [
        # other programmes
        "Erasmus+ deadline",
        "Horizon Europe budget",
        "LIFE programme eligibility",
        "scadenza Erasmus plus",
        "Interreg funding rate",
        "budget del PNRR",
        "Creative Europe maximum grant",
        # not covered by the call facts
        "minimum consortium size",
        "how many partners do we need?",
        "numero minimo di partner del consorzio",
        "how long does the project last?",
        "durata del progetto",
        "award criteria",
        "criteri di valutazione",
        "when are the evaluation results published?",
        "quando escono le graduatorie?",
        "previous call budget",
        # small talk and off topic
        "what's the weather",
        "tell me a joke",
        "chi ha vinto la partita",
        "who are you?",
        "come stai?",
        "what time is it?",
        "hello",
        "ciao",
        "grazie",
        "what's your name",
        "che tempo fa oggi",
        "what can you do?",
        "ho una domanda",
        "can I submit the proposal in Italian?",
        "can you write my proposal for me?",
        "is there a minimum grant?",
        "quanti soggetti devono far parte del partenariato?",
        "how many clusters can join a partnership?",
        "when do projects start?",
        "what other calls are open",
        "what's the success rate?",
        "c'e un webinar di presentazione?",
        "how many proposals were submitted last time?",
        "3 countries required?",
        "Hi, we are a cluster in Slovenia with 40 members: how many partners must a "
        "partnership have at least?",
        "",
        "?!?",
    ],
)
def test_falls_back(matcher: Matcher, text: str) -> None:
    assert answer(matcher, text) is None, matcher.best(text)


def test_other_programme_caps_even_a_perfect_keyword_match(matcher: Matcher) -> None:
    faq_id, score = matcher.best("budget")
    assert faq_id == "budget" and score >= 0.9
    assert matcher.best("Horizon Europe budget")[1] < THRESHOLD
    assert matcher.best("budget Erasmus+")[1] < THRESHOLD


def test_eligibility_criteria_are_not_award_criteria(matcher: Matcher) -> None:
    assert answer(matcher, "eligibility criteria") == "eligibility"
    assert answer(matcher, "award criteria") is None


def test_clusterxchange_duration_is_covered_but_project_duration_is_not(
    matcher: Matcher,
) -> None:
    assert answer(matcher, "how long does a ClusterXchange exchange last?") == "clusterxchange"
    assert answer(matcher, "how long does a project last?") is None


def test_same_text_same_answer(matcher: Matcher) -> None:
    assert matcher.best("Qual è il budget?") == matcher.best("Qual è il budget?")


def test_language_hint_does_not_change_the_match(matcher: Matcher) -> None:
    assert matcher.best("budget?", "it") == matcher.best("budget?", "en") == matcher.best("budget?")


def test_empty_knowledge_base_never_matches() -> None:
    assert Matcher([]).best("budget?") == (None, 0.0)


def test_small_custom_knowledge_base() -> None:
    template = jinja2.Template("x")
    entry = FaqEntry(
        id="parking",
        topic={"it": "Parcheggio", "en": "Parking"},
        questions={"it": ("Dove posso parcheggiare?",), "en": ("Where can I park?",)},
        keywords={"it": ("parcheggio",), "en": ("parking",)},
        answers={"it": template, "en": template},
        sources=("official_link",),
    )
    matcher = Matcher([entry])
    assert matcher.best("parking?")[0] == "parking"
    assert matcher.best("parcheggio")[1] >= THRESHOLD
    assert matcher.best("tell me a joke")[1] < THRESHOLD


# --- fuzzing -----------------------------------------------------------------------------------


def _weird_texts() -> Iterator[str]:
    yield "a" * 10_000
    yield "budget " * 2_000
    yield "\x00\x01\x02\x1b[31m budget \x7f"
    yield "🙂" * 5_000
    yield "<b>budget</b> & <script>alert(1)</script>"
    yield "*_`[budget](http://x)`_*"
    yield "line1\r\nline2\rline3\n"
    yield "\u202e\u200b\ufeff scadenza"
    yield "ß" * 3000 + "İ" * 3000
    yield "".join(chr(c) for c in range(0, 0x3000, 7))


@pytest.mark.parametrize("text", list(_weird_texts()))
def test_weird_inputs(matcher: Matcher, text: str) -> None:
    faq_id, score = matcher.best(text)
    assert faq_id is None or isinstance(faq_id, str)
    assert 0.0 <= score <= 1.0
    assert detect_language(text) in (None, "it", "en")


@given(text=st.text(max_size=400))
def test_fuzz_best_never_raises(matcher: Matcher, ids: set[str], text: str) -> None:
    faq_id, score = matcher.best(text)
    assert faq_id is None or faq_id in ids
    assert 0.0 <= score <= 1.0
    assert detect_language(text) in (None, "it", "en")


@given(
    text=st.lists(
        st.sampled_from(["budget", "scadenza", "🙂", "\x00", "Erasmus", "?", " ", "é", "x" * 50]),
        max_size=300,
    ).map("".join)
)
def test_fuzz_long_mixtures(matcher: Matcher, ids: set[str], text: str) -> None:
    faq_id, score = matcher.best(text)
    assert faq_id is None or faq_id in ids
    assert 0.0 <= score <= 1.0
