"""How the knowledge base reads a whole message: questions, language, answers and fallbacks.

Behaviour, not accuracy: accuracy on realistic messages is measured by bench/faq.py.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.knowledge import KnowledgeBase, KnowledgeError, decision
from bot.knowledge.analysis import DECISION_FEATURES
from bot.knowledge.lint import lint

ROOT = Path(__file__).resolve().parent.parent
SECOND_CALL = Path(__file__).resolve().parent / "data" / "second_call"
CALL_WORDS = re.compile(r"cosme|clusterxchange|easme|eismea|escp|bando|partenariat", re.I)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load(ROOT / "config")


# --- the whole message ----------------------------------------------------------------------


def test_two_questions_get_two_answers_in_the_order_asked(kb: KnowledgeBase) -> None:
    found = kb.understand("Hi! What is the total budget? And when is the deadline?\nThanks, Anna")
    assert [a.topic for a in found.answers] == ["budget", "deadline"]
    assert found.unanswered is None
    assert found.lang == "en"
    # Each answer carries its own source link.
    assert all("Source: https://" in a.text for a in found.answers)


def test_two_questions_in_one_sentence(kb: KnowledgeBase) -> None:
    found = kb.understand("qual è il budget e quando scade il bando?")
    assert [a.topic for a in found.answers] == ["budget", "deadline"]


@pytest.mark.parametrize(
    ("text", "topics"),
    [
        (
            "paesi ammessi, importo massimo per progetto e tasso di cofinanziamento?",
            ["countries", "max-grant", "funding-rate"],
        ),
        (
            "funding rate, number of grants and deadline?",
            ["funding-rate", "funded-proposals", "deadline"],
        ),
    ],
)
def test_a_list_of_subjects_in_one_sentence_gets_an_answer_each(
    kb: KnowledgeBase, text: str, topics: list[str]
) -> None:
    assert [a.topic for a in kb.understand(text).answers] == topics


def test_a_question_and_its_afterthought_are_one_question(kb: KnowledgeBase) -> None:
    # "maximum" qualifies the duration asked (a point the facts leave open): no grant answer.
    found = kb.understand("How many months is the project, maximum?")
    assert found.answers == ()
    assert found.unanswered is not None
    # A list naming one point the facts leave open is not several topics.
    found = kb.understand(
        "Quali voci di spesa sono ammissibili: personale, missioni, spese generali?"
    )
    assert found.answers == ()


def test_at_most_three_answers(kb: KnowledgeBase) -> None:
    found = kb.understand(
        "What is the budget? What is the deadline? What is the maximum grant? "
        "How many projects will be funded? What is the funding rate?"
    )
    assert 1 <= len(found.answers) <= 3


def test_context_greeting_and_signature_do_not_dilute_the_question(kb: KnowledgeBase) -> None:
    found = kb.understand(
        "Good morning,\nwe are a cluster of 40 SMEs in Apulia working on agrifood and we have "
        "partners in Spain and Greece.\nWhat is the maximum grant per project?\n"
        "Best regards,\nGiulia Rossi"
    )
    assert [a.topic for a in found.answers] == ["max-grant"]


def test_yes_no_question_gets_the_direct_answer_first(kb: KnowledgeBase) -> None:
    found = kb.understand("Is the call still open?")
    assert found.topic == "deadline"
    assert found.answers[0].text.startswith("No")


# --- points the facts do not confirm ----------------------------------------------------------


def test_unconfirmed_point_falls_back_with_its_own_text(kb: KnowledgeBase) -> None:
    question = "What is the minimum number of partners in the consortium?"
    found = kb.understand(question)
    assert found.answers == ()
    assert found.topic is None
    assert found.faq_id is not None and found.unconfirmed[0].faq_id == found.faq_id
    assert "not confirmed" in found.unconfirmed[0].text
    assert found.unanswered == question


def test_a_focus_cue_marks_the_question_so_statements_beside_it_are_context(
    kb: KnowledgeBase,
) -> None:
    # "Sono" can start a question ("Sono ammessi…?"); beside "volevo sapere" it is context.
    text = "Sono Paolo, project manager di un cluster ICT. Volevo sapere la scadenza. Grazie!"
    asked = [question for question, _, _ in kb.reader.questions(text)]
    assert asked == ["la scadenza"]
    found = kb.understand(text)
    assert [a.topic for a in found.answers] == ["deadline"]


def test_the_first_focus_cue_says_what_is_asked_a_later_one_the_purpose(
    kb: KnowledgeBase,
) -> None:
    text = (
        "Il cliente vuole sapere a cosa serve questo bando, per capire se è coerente con la"
        " sua strategia."
    )
    asked = [question for question, _, _ in kb.reader.questions(text)]
    assert asked[0].startswith("a cosa serve questo bando")
    assert kb.understand(text).topic == "objective"


def test_a_list_of_subjects_on_several_lines_asks_each_of_them(kb: KnowledgeBase) -> None:
    text = "Per la riunione di domani:\n- data di scadenza\n- budget complessivo\n- contatti"
    found = kb.understand(text)
    assert [a.topic for a in found.answers] == ["deadline", "budget", "contact"]
    # Lines that name nothing the knowledge base knows (greeting, signature) ask nothing.
    signed = kb.understand("Buongiorno\nscadenza del bando\nGrazie\nMarco Rossi")
    assert [a.topic for a in signed.answers] == ["deadline"]
    assert signed.unanswered is None


@pytest.mark.parametrize(
    "text", ["Was the deadline at midnight Brussels time?", "La scadenza era a mezzanotte?"]
)
def test_a_question_naming_another_time_gets_the_real_one_and_no_false_yes(
    kb: KnowledgeBase, text: str
) -> None:
    reply = kb.answer(text).text
    assert not reply.startswith(("Yes", "Sì"))
    assert "17:00" in reply.split("\n")[0]


def test_a_statement_that_names_the_subject_is_read_with_the_question(
    kb: KnowledgeBase,
) -> None:
    # Alone, "can we take part?" is about who may apply; the country before it makes it a
    # question on the countries.
    found = kb.understand("Our cluster is from Ukraine, are we allowed to take part or not?")
    assert found.topic == "countries"
    assert kb.understand("Are we allowed to take part?").topic == "eligibility"


@pytest.mark.parametrize(
    ("text", "point"),
    [
        ("Is there an information day or a webinar for applicants?", "events-and-help"),
        ("Potete aiutarci a scrivere la proposta?", "events-and-help"),
        ("What was the success rate in the previous editions?", "previous-editions"),
        ("Quante candidature avete ricevuto per questo bando?", "previous-editions"),
        (
            "Can a cluster from the United States join as an associated partner?",
            "third-country-partners",
        ),
    ],
)
def test_common_questions_the_facts_leave_open_fall_back(
    kb: KnowledgeBase, text: str, point: str | None
) -> None:
    found = kb.understand(text)
    assert found.topic is None
    assert found.faq_id == point
    assert found.unanswered is not None


def test_only_the_unanswered_question_prefills_the_form(kb: KnowledgeBase) -> None:
    found = kb.understand("What is the budget? And how long do the projects last?")
    assert [a.topic for a in found.answers] == ["budget"]
    assert found.unanswered == "And how long do the projects last?"


def test_another_programme_is_never_answered_as_this_call(kb: KnowledgeBase) -> None:
    found = kb.understand("When is the Horizon Europe deadline?")
    assert found.topic is None
    assert found.unanswered is not None


def test_off_topic_falls_back(kb: KnowledgeBase) -> None:
    found = kb.understand("what's the weather like in Rome?")
    assert found.answers == ()


def test_typos_are_tolerated(kb: KnowledgeBase) -> None:
    assert kb.understand("wat is the dedline?").topic == "deadline"
    assert kb.understand("qual e il bugdet totale").topic == "budget"


def test_a_word_is_never_corrected_to_a_shorter_acronym(kb: KnowledgeBase) -> None:
    # "pic" (the participant code) is one edit from "pick", a word of its own.
    assert "pic" in kb.matcher.surface
    assert kb.matcher.correct("pick") != "pic"


def test_answer_joins_every_part_of_the_reply(kb: KnowledgeBase) -> None:
    reply = kb.answer("What is the budget? And how long do the projects last?")
    assert reply.topic == "budget" and reply.faq_id == "budget"
    assert reply.text.startswith(reply.answers[0].text)
    assert reply.text.endswith(kb.fallback["en"])


# --- language ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Qual è il contributo massimo per progetto?", "it"),
        ("What is the maximum grant per project?", "en"),
        ("scadenza?", "it"),
        ("when is the deadline?", "en"),
        # A mixed message gets its main language.
        ("Hi, volevo sapere quando scade il bando e quanto è il budget", "it"),
        # A word ending in an accented vowel is Italian, whatever the letters around it say.
        ("Cos'è ClusterXchange?", "it"),
        # The call's identifier (COS-CLUSTER-...) is in every language: its "cos" is not
        # English, so the unaccented "cos'e" still says Italian, and the identifier beside
        # an English word says nothing.
        ("cos'e clustterxchange?", "it"),
        ("deadline COS-CLUSTER-2020-3-03", "en"),
        # Numbers do not lengthen a short message: its one Italian word still decides.
        ("budegt 6 miliardi e vro?", "it"),
    ],
)
def test_reply_language_is_the_message_language(kb: KnowledgeBase, text: str, lang: str) -> None:
    assert kb.understand(text, previous_lang="it" if lang == "en" else "en").lang == lang


@pytest.mark.parametrize("text", ["ok", "ciao", "👍", "2021"])
def test_a_message_too_short_to_tell_keeps_the_previous_language(
    kb: KnowledgeBase, text: str
) -> None:
    assert kb.understand(text, previous_lang="it").lang in ("it",)
    assert kb.choose_language("2021", previous_lang="en") == "en"


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        # Chat spellings mislead a letter-based identifier; language.yaml says what they are.
        ("tel me a jok plz", "en"),
        ("thx, when r u closing?", "en"),
        ("cmq nn ho capito xke", "it"),
    ],
)
def test_informal_spellings_say_their_language(kb: KnowledgeBase, text: str, lang: str) -> None:
    assert kb.understand(text, previous_lang="it" if lang == "en" else "en").lang == lang


def test_informal_spellings_and_fillers_read_as_plain_words(kb: KnowledgeBase) -> None:
    plain = kb.understand("Qual è la scadenza? Non ho capito")
    informal = kb.understand("qual è la scadenza? nn ho capito")
    assert informal.topic == plain.topic == "deadline"
    padded = kb.understand("Hello! Could you kindly and briefly tell me the total budget, please?")
    assert padded.topic == "budget"


def test_an_informal_spelling_in_both_languages_is_an_error(tmp_path: Path) -> None:
    import yaml

    from bot.knowledge.cues import parse_language

    data = yaml.safe_load((ROOT / "config" / "language.yaml").read_text(encoding="utf-8"))
    data["informal"] = {"en": {"pls": "please"}, "it": {"pls": "per favore"}}
    with pytest.raises(KnowledgeError, match="'pls' is in both"):
        parse_language(data, tmp_path / "language.yaml")


def test_an_explicit_choice_wins(kb: KnowledgeBase) -> None:
    found = kb.understand("What is the budget?", lang="it")
    assert found.lang == "it"
    assert "Fonte" in found.answers[0].text


# --- call knowledge is data -------------------------------------------------------------------


def test_no_call_specific_word_in_the_code() -> None:
    for folder in ("bot/knowledge", "bot/dialogue"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert not CALL_WORDS.search(text), (path, CALL_WORDS.search(text))


def test_a_second_call_is_new_files_only() -> None:
    kb = KnowledgeBase.load(SECOND_CALL)
    assert kb.call.id == "PORTS-2031-01"
    assert kb.understand("How much funding can a harbor get?").topic == "grant"
    assert kb.understand("quando scade?").topic == "deadline"
    both = kb.understand("Can a marina apply? And what is the closing date?")
    assert [a.topic for a in both.answers] == ["who", "deadline"]
    unconfirmed = kb.understand("Is dredging eligible?")
    assert unconfirmed.topic is None and unconfirmed.faq_id == "dredging-costs"
    assert kb.understand("Interreg deadline?").topic is None


def test_check_reports_duplicated_and_misread_variants(tmp_path: Path) -> None:
    target = tmp_path / "kb"
    shutil.copytree(SECOND_CALL, target)
    faq = target / "faq.yaml"
    text = faq.read_text(encoding="utf-8")
    # The same variant in two entries (an error), and a grant question filed under 'who'.
    text = text.replace(
        "en: [Who can apply?,", "en: [How much is the grant?, What funding does a marina get?,"
    )
    faq.write_text(text, encoding="utf-8")
    (target / "lexicon.yaml").write_text("synonyms:\n  - [lighthouse, faro]\n", encoding="utf-8")
    findings = lint(KnowledgeBase.load(target))
    assert any("'How much is the grant?' is in both" in e for e in findings.errors)
    assert any("entry 'who'" in w and "matches entry 'grant'" in w for w in findings.warnings)
    assert any("'lighthouse' references nothing" in w for w in findings.warnings)


def test_unknown_topic_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "kb"
    shutil.copytree(SECOND_CALL, target)
    faq = target / "faq.yaml"
    faq.write_text(
        faq.read_text(encoding="utf-8").replace("topic: grant", "topic: grants"), encoding="utf-8"
    )
    with pytest.raises(KnowledgeError) as caught:
        KnowledgeBase.load(target)
    assert any("unknown topic 'grants'" in p for p in caught.value.problems)


# --- any input --------------------------------------------------------------------------------


@given(st.text(max_size=400))
def test_any_text_is_understood_without_error(text: str) -> None:
    kb = _shared_kb()
    found = kb.understand(text)
    assert found.lang in ("it", "en")
    assert len(found.answers) <= 3
    assert all(a.topic is not None for a in found.answers)


_KB: list[KnowledgeBase] = []


def _shared_kb() -> KnowledgeBase:
    if not _KB:
        _KB.append(KnowledgeBase.load(ROOT / "config"))
    return _KB[0]


# --- the answer-or-forward decision ---------------------------------------------------------


def _with_tuning(kb: KnowledgeBase, **changes: float) -> KnowledgeBase:
    """A copy of the shipped knowledge base whose matcher uses other parameters."""
    copy = KnowledgeBase.load(ROOT / "config")
    copy.matcher.tuning = replace(kb.matcher.tuning, **changes)
    return copy


def test_the_fitted_decision_model_is_read_from_the_faq_file(kb: KnowledgeBase) -> None:
    tuning = kb.matcher.tuning
    assert tuning.has_decision
    matching = kb.faq.matching
    assert tuning.decision_bias == matching["decision_bias"]
    assert tuning.decision_weights == tuple(
        matching[f"decision_{name}"] for name in DECISION_FEATURES
    )


def test_the_words_before_a_focus_cue_are_the_context_of_its_question(kb: KnowledgeBase) -> None:
    found = kb.understand(
        "Hi there, Tom from a robotics SME in Leeds. Our cluster manager keeps mentioning "
        "something called ClusterXchange and now I'm curious, what is it exactly?\nCheers, Tom"
    )
    # "what is it exactly" alone names nothing; the clause before "I'm curious" does.
    assert found.topic == "clusterxchange"


def test_a_question_passed_on_from_someone_else_is_the_question(kb: KnowledgeBase) -> None:
    found = kb.understand(
        "Buongiorno! Sono Chiara, lavoro in un cluster agroalimentare in Emilia. Il mio capo "
        "mi ha chiesto di verificare quanto può ricevere al massimo un singolo progetto. "
        "Grazie mille e buona giornata!"
    )
    assert found.topic == "max-grant"
    assert found.lang == "it"


@pytest.mark.parametrize(
    "message",
    [
        "Is there a pre-financing at the start of the project? And in what percentage?",
        "Ci chiedevamo se sia previsto un prefinanziamento all'avvio del progetto e, nel caso, "
        "in che percentuale.",
    ],
)
def test_a_few_words_elaborating_an_open_point_go_with_it(kb: KnowledgeBase, message: str) -> None:
    found = kb.understand(message)
    # "in what percentage" alone would be the funding rate; here it asks about the open point.
    assert found.topic is None
    assert found.answers == ()
    assert found.unanswered == message


def test_a_short_question_on_another_subject_after_an_open_point_is_answered(
    kb: KnowledgeBase,
) -> None:
    found = kb.understand("Quanti partner minimo servono? E qual è la scadenza?")
    assert [a.topic for a in found.answers] == ["deadline"]
    assert found.unanswered == "Quanti partner minimo servono?"


def test_the_decision_model_decides_whether_the_best_entry_answers(kb: KnowledgeBase) -> None:
    question = "What is the total budget of the call?"
    assert kb.understand(question).topic == "budget"
    # The same ranking, a model that never answers: the question is forwarded.
    never = _with_tuning(kb, decision_bias=-100.0)
    found = never.understand(question)
    assert found.topic is None
    assert found.unanswered is not None
    # Without a model, the threshold decides again.
    weights = {f"decision_{name}": 0.0 for name in DECISION_FEATURES}
    plain = _with_tuning(kb, decision_bias=0.0, **weights)
    assert not plain.matcher.tuning.has_decision
    assert plain.understand(question).topic == "budget"
    assert _with_tuning(plain, threshold=1.01).understand(question).topic is None


def test_the_decision_model_never_answers_an_unconfirmed_point(kb: KnowledgeBase) -> None:
    always = _with_tuning(kb, decision_bias=100.0)
    found = always.understand("What is the minimum number of partners in a consortium?")
    assert found.topic is None
    assert found.unanswered is not None


def test_decision_features_describe_the_question_and_its_entry(kb: KnowledgeBase) -> None:
    matcher, reader = kb.matcher, kb.reader
    plain = matcher.query("What is the budget?", "en")
    best, margin, ranked = reader.choose(plain)
    assert best is not None
    features = decision.features(matcher, plain, best, margin, False, ranked)
    assert len(features) == len(DECISION_FEATURES)
    score, got_margin, unknown, words, unexplained, closed, claim, information, gap, beyond = (
        features
    )
    assert (score, got_margin) == (best.score, margin)
    # Nothing of the question is only the open points' own.
    assert beyond == 0.0
    assert unknown == 0.0
    assert unexplained == 0.0
    assert (closed, claim) == (0.0, 0.0)
    assert information > 0.0
    # The gap to the closest open point: the whole score when none ranks.
    open_scores = [r.score for r in ranked if r.group.startswith("?")]
    assert gap == best.score - max(open_scores, default=0.0)
    assert decision.features(matcher, plain, best, margin, False)[8] == best.score
    # Function words alone say nothing.
    empty = matcher.query("what is it?", "en")
    assert empty.weights
    assert decision.features(matcher, empty, best, margin, False)[7] == 0.0
    # Words no entry knows, and known words the entry does not explain, raise their shares.
    noisy = matcher.query("What is the budget for zorblax quintessimo deadline?", "en")
    best, margin, _ = reader.choose(noisy)
    assert best is not None
    features = decision.features(matcher, noisy, best, margin, True)
    assert features[2] > 0.0
    assert features[3] > words
    assert features[4] > 0.0
    assert features[5] == 1.0
    # A word the closest open point holds and the answer does not: its share of the weight.
    split = matcher.query("Maximum grant for the coordinator?", "en")
    _, margin, ranked = reader.choose(split)
    answer = next(r for r in ranked if r.group == "max-grant")
    assert decision.features(matcher, split, answer, margin, False, ranked)[9] > 0.0


@pytest.mark.parametrize(
    "text",
    ["Is a cluster in Switzerland eligible?", "La Norvegia è ammessa?", "Can an Israeli SME join?"],
)
def test_a_country_outside_the_confirmed_list_is_an_open_point(
    kb: KnowledgeBase, text: str
) -> None:
    # The facts list the countries that take part; any other is not confirmed either way.
    found = kb.understand(text)
    assert found.topic is None
    assert [point.faq_id for point in found.unconfirmed] == ["third-country-partners"]


@pytest.mark.parametrize(
    ("text", "point"),
    [
        ("Can the 2 February deadline be extended?", "late-submission"),
        ("La scadenza del 2 febbraio è prorogabile?", "late-submission"),
        # The open point that holds "fee" does not rank: no point is named, still forwarded.
        ("Is there a participation fee to register on the ECCP?", None),
        ("Il contributo di 500 000 euro copre anche le attrezzature?", "eligible-costs"),
    ],
)
def test_an_aspect_only_open_points_name_forwards_a_question_about_a_confirmed_fact(
    kb: KnowledgeBase, text: str, point: str | None
) -> None:
    # The deadline, the ECCP and the 500 000 are confirmed; an extension, a fee or equipment
    # are lexicon groups only points the facts leave open hold.
    found = kb.understand(text)
    assert found.topic is None
    assert found.unanswered == text
    assert [p.faq_id for p in found.unconfirmed] == ([point] if point else [])


def test_too_late_is_still_answered_while_an_extension_is_forwarded(kb: KnowledgeBase) -> None:
    assert kb.understand("Is it too late to apply?").topic == "deadline"
    assert kb.understand("Can we get an extension of the deadline?").topic is None


def test_beside_the_list_of_countries_another_country_is_still_forwarded(
    kb: KnowledgeBase,
) -> None:
    found = kb.understand("Quali paesi possono partecipare? C'è anche la Norvegia?")
    assert found.topic == "countries"
    assert [point.faq_id for point in found.unconfirmed] == ["third-country-partners"]
