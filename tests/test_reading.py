"""How a message is cut into questions and how its words are read before ranking.

Behaviour, not accuracy: accuracy on realistic messages is measured by bench/faq.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.knowledge import KnowledgeBase
from bot.knowledge.cues import load_language, parse_language
from bot.knowledge.errors import KnowledgeError
from bot.knowledge.faq import prose
from bot.knowledge.split import Splitter, find_loosely, sentences

ROOT = Path(__file__).resolve().parent.parent
SECOND_CALL = Path(__file__).resolve().parent / "data" / "second_call"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load(ROOT / "config")


@pytest.fixture(scope="module")
def splitter() -> Splitter:
    return Splitter(load_language())


# --- sentences and questions ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Un progetto può ricevere più di 500.000 euro?",
        "Was the deadline at 17:00 Brussels time?",
        "Is the call page on ec.europa.eu the right one?",
    ],
)
def test_a_period_or_colon_inside_a_word_or_number_does_not_end_a_sentence(text: str) -> None:
    assert sentences(text) == [text]


def test_sentences_end_at_marks_followed_by_a_space_or_a_new_line() -> None:
    text = "Hi! We are a cluster. What is the budget?? Thanks...\nAnna"
    assert sentences(text) == [
        "Hi!",
        "We are a cluster.",
        "What is the budget??",
        "Thanks...",
        "Anna",
    ]


def test_a_request_cue_with_a_word_inside_still_marks_the_question(splitter: Splitter) -> None:
    """ "Volevo [solo] chiedervi ..." asks like "volevo chiedervi ...", even with no '?'."""
    text = (
        "Buongiorno! Sono Marta, lavoro in un cluster a Torino. Volevo solo chiedervi fino a "
        "quando si poteva presentare la domanda. Grazie mille!"
    )
    assert [question for question, _, _ in splitter.questions(text)] == [
        "fino a quando si poteva presentare la domanda"
    ]
    cue = frozenset({("i", "wanted", "to", "ask")})
    assert find_loosely(["i", "just", "wanted", "to", "ask", "when"], cue) == 5
    assert find_loosely(["i", "wanted", "to", "ask"], cue) == 4
    assert find_loosely(["i", "really", "do", "not", "want"], frozenset({("i", "want")})) == -1


def test_beside_a_question_mark_a_statement_is_context(splitter: Splitter) -> None:
    # "Devo ..." starts like a question, but the message marks its questions with '?'.
    asked = splitter.questions("Che tempo fa domani a Bruxelles? Devo andarci per lavoro.")
    assert [sentence for _, _, sentence in asked] == ["Che tempo fa domani a Bruxelles?"]
    # Without any question mark, a sentence that starts like a question still asks.
    assert splitter.questions("Devo registrarmi prima")[0][0] == "Devo registrarmi prima"


def test_a_sentence_announcing_the_questions_asks_nothing(splitter: Splitter) -> None:
    asked = splitter.questions(
        "We are on the collaboration platform since 2019. Our question is simple: what was the"
        " last day to submit?"
    )
    assert [question for question, _, _ in asked] == ["what was the last day to submit?"]
    # It is the context of the question that follows it.
    assert asked[0][1] == "Our question is simple:"
    # Alone, it is the message.
    assert splitter.questions("Una domanda:")[0][0] == "Una domanda:"


def test_a_comma_before_a_question_word_starts_another_question(splitter: Splitter) -> None:
    asked = splitter.questions(
        "Qual è il contributo massimo, a quanto arriva la percentuale e quanto dura il progetto?"
    )
    assert [question for question, _, _ in asked] == [
        "qual è il contributo massimo",
        "a quanto arriva la percentuale",
        "quanto dura il progetto",
    ]


def test_question_words_joined_by_and_ask_one_question(splitter: Splitter) -> None:
    asked = splitter.questions("Where and how do we hand everything in?")
    assert [question for question, _, _ in asked] == ["Where and how do we hand everything in?"]
    assert len(splitter.questions("Quando e dove si presenta la domanda?")) == 1


def test_a_part_with_a_question_word_before_a_comma_is_a_question_not_context(
    splitter: Splitter,
) -> None:
    # "We are from Kosovo, can we …" opens with context; "fino a quando …," already asks.
    asked = splitter.questions("Oh ma fino a quando se poteva manda la domanda, che mi so perso?")
    assert asked[0][0] == "oh ma fino a quando se poteva manda la domanda"
    asked = splitter.questions("We are a cluster from Kosovo, can we apply?")
    assert [(question, before) for question, before, _ in asked] == [
        ("can we apply", "we are a cluster from kosovo")
    ]


def test_the_context_of_a_question_runs_back_to_the_last_question(
    splitter: Splitter, kb: KnowledgeBase
) -> None:
    text = (
        "What is the budget? Two of our partners are clusters from Serbia and Albania. "
        "We have worked together for years. Can they?"
    )
    assert splitter.context(text, "Can they?") == (
        "Two of our partners are clusters from Serbia and Albania. "
        "We have worked together for years."
    )
    # The sentence just before names nothing sure: the subject two sentences back answers.
    found = kb.understand(
        "Two of our partners are clusters from Serbia and Albania. "
        "We have worked together for years. Can they?"
    )
    assert [a.topic for a in found.answers] == ["countries"]


def test_a_number_alone_after_a_question_asks_nothing_new(splitter: Splitter) -> None:
    asked = splitter.questions("Quanto dura il progetto, 2 anni? 3?")
    assert [sentence for _, _, sentence in asked] == ["Quanto dura il progetto, 2 anni?"]
    # Alone, a number is still the question.
    assert len(splitter.questions("500000?")) == 1


def test_an_open_point_asked_in_general_may_be_answered_for_the_subject_before_it(
    kb: KnowledgeBase,
) -> None:
    # Alone, "can they join our partnership?" asks about partnership rules, which the facts
    # leave open; after the statement naming Albania and Serbia it asks about countries.
    found = kb.understand(
        "We work with clusters in Albania and Serbia. Can they join our partnership?"
    )
    assert [a.topic for a in found.answers] == ["countries"]
    assert not kb.understand("Can they join our partnership?").answers
    # Alone, this question is unsure even among open points: the statement decides.
    found = kb.understand(
        "We are a cluster from Montenegro. Is it possible for us to be a partner?"
    )
    assert [a.topic for a in found.answers] == ["countries"]


def test_a_statement_naming_what_only_an_open_point_knows_turns_the_question_to_it(
    kb: KnowledgeBase,
) -> None:
    # Alone, the question is the funding rate; after the statement it asks the rate for
    # support to third parties, which the facts leave open.
    question = "What percentage is financed?"
    assert [a.topic for a in kb.understand(question).answers] == ["funding-rate"]
    found = kb.understand(
        f"We will give vouchers to SMEs as financial support to third parties. {question}"
    )
    assert not found.answers
    assert [point.faq_id for point in found.unconfirmed] == ["third-party-rate"]
    # A statement about something the facts answer changes nothing.
    found = kb.understand(f"We are a cluster of 40 SMEs. {question}")
    assert [a.topic for a in found.answers] == ["funding-rate"]


def test_a_paragraph_that_marks_no_question_asks_in_its_last_sentence(
    splitter: Splitter,
) -> None:
    text = (
        "We manage a cluster of 80 SMEs in Bavaria. We took part in an earlier edition. "
        "For our board I need the total budget of the call and the funding rate. Thanks a lot!"
    )
    asked = splitter.questions(text)
    assert {sentence for _, _, sentence in asked} == {
        "For our board I need the total budget of the call and the funding rate."
    }
    assert asked[0][1] == "We took part in an earlier edition."


# --- words ------------------------------------------------------------------------------------


def test_only_a_truncated_infinitive_is_written_out(kb: KnowledgeBase) -> None:
    # "città" and "attività" end in a stressed vowel too, but "cittare" is no word.
    restore = kb.matcher.spellings.written_out
    assert (
        restore("Possiamo entrà? E parlà co' voi?", "it") == "Possiamo entrare? E parlare co' voi?"
    )
    assert restore("Città e attività: sarà possibile?", "it") == "Città e attività: sarà possibile?"
    # Only where language.yaml says so: English has no such endings.
    assert restore("entrà", "en") == "entrà"


def test_truncated_endings_must_map_one_letter_to_an_ending(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "config" / "language.yaml").read_text(encoding="utf-8"))
    data["truncated_endings"] = {"it": {"àà": "are"}}
    with pytest.raises(KnowledgeError, match=r"truncated_endings\.it must map one letter"):
        parse_language(data, tmp_path / "language.yaml")


def test_real_words_are_not_corrected_into_knowledge_base_words(kb: KnowledgeBase) -> None:
    matcher = kb.matcher
    # A filler, a function word and a form of a known word stay as they are.
    for word in ("comunque", "although", "capito"):
        assert matcher.correct(word) == word
    # A typo of a knowledge-base word is still corrected.
    assert matcher.correct("dedline") == "deadline"


def test_a_number_the_entries_do_not_hold_is_not_evidence_against_them(
    kb: KnowledgeBase,
) -> None:
    matcher = kb.matcher
    plain = matcher.query("how many projects are funded", "en")
    guessed = matcher.query("are more than 37 projects funded", "en")
    assert guessed.unknown == plain.unknown == 0
    assert set(guessed.weights) <= set(plain.weights)


def test_informal_spellings_are_read_in_their_own_language_only(kb: KnowledgeBase) -> None:
    matcher = kb.matcher
    italian = matcher.spellings.expand(["nn", "ce", "sta"], "it")
    assert italian[:2] == ["non", "ci"]
    # The same letters in an English message are English words.
    assert matcher.spellings.expand(["nn", "ce"], "en") == ["nn", "ce"]


@pytest.mark.parametrize(
    ("informal", "standard", "lang"),
    [
        # Roman forms and a word cut at its apostrophe.
        (
            "quanno scade sto bando de quest'anno?",
            "quando scade questo bando di questo anno?",
            "it",
        ),
        # Sicilian forms.
        (
            "unni si manna a domanda, pirchì nun u sacciu",
            "dove si manda a domanda, perché non u so",
            "it",
        ),
        # Roman and Neapolitan infinitives without their ending.
        (
            "gli ucraini ponno entrà? se pò partecipà?",
            "gli ucraini ponno entrare? se pò partecipare?",
            "it",
        ),
        # Plurals and misspellings of non-native English.
        (
            "can companys from other countrys aply?",
            "can companies from other countries apply?",
            "en",
        ),
    ],
)
def test_regional_and_chat_spellings_are_read_as_the_standard_words(
    kb: KnowledgeBase, informal: str, standard: str, lang: str
) -> None:
    read = kb.matcher.query(informal, lang)
    assert read.weights == kb.matcher.query(standard, lang).weights
    assert read.unknown == 0


def test_the_calls_own_identifier_does_not_pull_a_question_to_its_topic(
    kb: KnowledgeBase,
) -> None:
    assert kb.understand(f"deadline {kb.call.id}").topic == "deadline"
    assert kb.understand(f"What is {kb.call.id}?").topic == "programme"


def test_short_italian_questions_are_answered_in_italian(kb: KnowledgeBase) -> None:
    for text in ("Che cos'è ClusterXchange?", "Bastano due partner?"):
        assert kb.understand(text, previous_lang="en").lang == "it"


def test_english_words_italian_writes_as_its_own_do_not_make_a_message_english(
    kb: KnowledgeBase,
) -> None:
    """language.yaml's shared_words ("deadline", "lump sum") vote for neither language."""
    for text in ("E la deadline?", "importo del lump sum", "Qual è il budget del topic?"):
        assert kb.understand(text, previous_lang="en").lang == "it", text
    # Alone they say nothing: the conversation's language stays.
    assert kb.detect("deadline?") is None
    assert kb.understand("deadline?", previous_lang="it").lang == "it"


def test_the_fact_names_of_italian_answers_are_not_italian_words(kb: KnowledgeBase) -> None:
    """An answer template's tags ("{{ funding_rate }}"), commands and links are not its
    language's words: short English questions that use those words read as English."""
    for text in ("funding rate?", "eligible countries?", "opening date?"):
        assert kb.understand(text, previous_lang="it").lang == "en", text
    assert prose(
        "Usa /contact: {{ secretariat_email }} {% if x %}ok{% endif %} https://a.eu/b"
    ).split() == ["Usa", ":", "ok"]


def test_shared_words_are_single_words(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "config" / "language.yaml").read_text(encoding="utf-8"))
    data["shared_words"] = ["lump sum"]
    with pytest.raises(KnowledgeError, match="shared_words: one word per item"):
        parse_language(data, tmp_path / "language.yaml")


def test_the_words_of_a_comparison_say_nothing_of_the_subject() -> None:
    # "more than", "at least", "almeno": a yes/no question on what its other words name.
    second = KnowledgeBase.load(SECOND_CALL)
    matcher = second.matcher
    assert matcher.query("Is the grant more than 900 000?", "en") == matcher.query(
        "Is the grant 900 000?", "en"
    )
    assert matcher.query("contributo di almeno 900 000?", "it") == matcher.query(
        "contributo di 900 000?", "it"
    )
    assert second.understand("Is the grant more than 900 000 per harbour?").topic == "grant"


def test_an_accented_verb_is_not_a_conjunction(splitter: Splitter) -> None:
    # "è" (is) folds to "e" (and); only the conjunction as written joins two questions.
    assert len(splitter.questions("Il contributo è quanto?")) == 1
    assert len(splitter.questions("il budget e quando scade?")) == 2


def test_two_subjects_of_different_topics_joined_by_and_are_two_questions(
    kb: KnowledgeBase,
) -> None:
    found = kb.understand("scadenza e budget?")
    assert [a.topic for a in found.answers] == ["deadline", "budget"]
    # One subject asked about twice stays one question.
    assert len(kb.understand("Can SMEs and universities apply?").answers) <= 1


def test_the_reason_for_asking_after_a_comma_is_context(splitter: Splitter) -> None:
    asked = splitter.questions(
        "Can organisations from Ukraine take part, since one of our partners is in Kharkiv?"
    )
    assert [question for question, _, _ in asked] == ["can organisations from ukraine take part"]
    asked = splitter.questions("Possono partecipare i cluster albanesi, perché abbiamo un partner?")
    assert [question for question, _, _ in asked] == ["possono partecipare i cluster albanesi"]


def test_a_choice_of_answers_is_not_a_yes_no_question(kb: KnowledgeBase) -> None:
    reader = kb.reader
    assert reader.is_closed("is the call still open")
    # "… or …" asks which of the two.
    assert not reader.is_closed("is the call still open or closed")
    assert not reader.is_closed("possiamo partecipare da soli oppure serve un cluster")
    # "… or not" still asks yes or no.
    assert reader.is_closed("is the call still open or not")
    assert reader.is_closed("il bando è ancora aperto o no")


def test_context_does_not_turn_a_question_into_an_open_point_it_does_not_ask(
    kb: KnowledgeBase,
) -> None:
    found = kb.understand(
        "I coordinate a cluster in Vilnius. The partners are ready to sign."
        " Can we still send it in?"
    )
    # Read with "The partners are ready to sign." the question is closest to a point on
    # British partners, which the question alone never comes near.
    assert all(point.faq_id != "uk-details" for point in found.unconfirmed)


def test_chat_spellings_of_question_words_count_as_question_words(kb: KnowledgeBase) -> None:
    reader = kb.reader
    # "qnt" is "quanto": an open question, not a yes/no one.
    assert not reader.is_closed("qnt e la percentuale di finanziamento")
    assert reader.is_closed("la percentuale di finanziamento e alta")
    assert reader.splitter.is_question("ki puo partecipare")


def test_a_preamble_before_the_question_word_is_left_out(kb: KnowledgeBase) -> None:
    splitter = kb.reader.splitter
    text = "Per pura curiosità (e un po' d'ansia) quanti progetti pensano di finanziare?"
    assert splitter.from_question_word(text).startswith("quanti progetti")
    assert splitter.from_question_word("Quanti progetti pensano di finanziare?") == ""
    found = kb.understand(text, "it")
    assert found.topic == "funded-proposals"


def test_a_messages_language_is_detected_once(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session asks for the reply language and `understand` again: one detection."""
    import bot.knowledge.language as language

    calls: list[str] = []
    real = language.detect

    def counted(text: str, *args: object) -> str | None:
        calls.append(text)
        return real(text, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(language, "detect", counted)
    kb.clear_cache()
    text = "Qual è la scadenza del bando?"
    assert kb.detect(text) == "it"
    assert kb.understand(text).lang == "it"
    assert calls == [text]
