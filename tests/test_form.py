"""The enquiry form's field validation, the country list and the bot texts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.dialogue.smalltalk import small_talk
from bot.dialogue.texts import KEYS, Texts, check_texts
from bot.enquiries import countries
from bot.enquiries.fields import (
    FIELDS,
    LIMITS,
    FieldError,
    clean_surrogates,
    validate_draft,
    validate_field,
)


def _code(field: str, value: str) -> str:
    with pytest.raises(FieldError) as caught:
        validate_field(field, value)
    return caught.value.code


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("name", "  Maria   Rossi ", "Maria Rossi"),
        ("name", "José Ñúñez-O'Brien", "José Ñúñez-O'Brien"),
        ("name", "Maria de los Ángeles García y Pérez", "Maria de los Ángeles García y Pérez"),
        ("name", "李小龙", "李小龙"),
        ("email", " Maria.Rossi@Example.ORG ", "Maria.Rossi@example.org"),
        ("email", "a@xn--bcher-kva.example", "a@xn--bcher-kva.example"),
        ("organisation", "Cluster <Lombardia> & Co.", "Cluster <Lombardia> & Co."),
        # A web address alone names the organisation; digits within a name are fine.
        ("organisation", "https://www.cluster.example.it", "https://www.cluster.example.it"),
        ("organisation", "3M Italia", "3M Italia"),
        ("organisation", "Yahoo! Europe", "Yahoo! Europe"),
        ("country", "italia", "Italy"),
        ("country", "IT", "Italy"),
        ("country", "Regno Unito", "United Kingdom"),
        ("country", "Türkiye", "Turkey"),
        ("country", "svizzera", "Switzerland"),
        ("country", "altro", "Other"),
        ("question", "Line one\r\nline two\rline\tthree  ", "Line one\nline two\nline\tthree"),
    ],
)
def test_accepted_values_are_normalised(field: str, raw: str, expected: str) -> None:
    assert validate_field(field, raw) == expected


@pytest.mark.parametrize(
    ("field", "raw", "code"),
    [
        ("name", "", "empty"),
        ("name", "   ", "empty"),
        ("name", "M", "too_short"),
        ("name", "M" * 101, "too_long"),
        ("name", "Maria\nRossi", "multiline"),
        ("name", "Maria\rRossi", "multiline"),
        ("name", "Maria\u2028Rossi", "multiline"),
        ("name", "Maria\x00Rossi", "control"),
        ("name", "Maria\x1b[31mRossi", "control"),
        ("name", "Maria\u202eissoR", "control"),
        ("name", "12345", "no_letters"),
        ("name", "maria@example.org", "name_looks_wrong"),
        ("name", "What is the deadline?", "name_question"),
        ("name", "Maria?", "name_question"),
        ("name", "¿Qué plazo", "name_question"),
        ("name", "I would like to ask about the rules of the call", "name_too_many_words"),
        ("email", "not-an-address", "email_invalid"),
        ("email", "maria@", "email_invalid"),
        ("email", "Maria <maria@example.org>", "email_invalid"),
        ("email", "maria@example.org\r\nBcc: x@evil.example", "multiline"),
        ("email", "a" * 250 + "@example.org", "too_long"),
        ("organisation", "Cluster\tLombardia\n", "control"),
        ("organisation", "Cluster\nLombardia", "multiline"),
        ("organisation", "x" * 201, "too_long"),
        ("organisation", "!!", "organisation_no_letters"),
        ("organisation", "maria.rossi@example.org", "organisation_email"),
        ("organisation", "Cluster Lombardia - info@cluster.example.it", "organisation_email"),
        ("organisation", "0039 02 1234567", "organisation_no_letters"),
        ("organisation", "12345678901", "organisation_no_letters"),
        ("organisation", "- / -", "organisation_no_letters"),
        ("organisation", "Can a university apply?", "organisation_question"),
        ("country", "Atlantis", "country_unknown"),
        ("country", "XX", "country_unknown"),
        ("question", "short?", "too_short"),
        ("question", "q" * 4001, "too_long"),
        ("question", "What about\x07 the bell?", "control"),
        ("question", "???????????", "no_letters"),
    ],
)
def test_refused_values_say_why(field: str, raw: str, code: str) -> None:
    assert _code(field, raw) == code


def test_too_many_words_reports_the_limit() -> None:
    with pytest.raises(FieldError) as caught:
        validate_field("name", "one two three four five six seven eight nine")
    assert caught.value.params == {"max": 8}


# ---------------------------------------------------------------- small talk


@pytest.mark.parametrize(
    ("text", "kind", "lang"),
    [
        ("ciao", "greeting", "it"),
        ("Ciao, come stai?", "how_are_you", "it"),
        ("Buongiorno a tutti!", "greeting", "it"),
        ("salve", "greeting", "it"),
        ("ok grazie", "thanks", "it"),
        ("perfetto, grazie!", "thanks", "it"),
        ("grazie mille", "thanks", "it"),
        ("Ti ringrazio per l'aiuto", "thanks", "it"),
        ("Grazie, ciao", "thanks", "it"),
        ("arrivederci", "farewell", "it"),
        ("ok grazie, buona giornata!", "farewell", "it"),
        ("no grazie", "farewell", "it"),
        ("Hi, how are you?", "how_are_you", "en"),
        ("hello bot", "greeting", "en"),
        ("Good morning everyone", "greeting", "en"),
        ("hey there 👋", "greeting", "en"),
        ("ok thanks", "thanks", "en"),
        ("Thank you very much!!", "thanks", "en"),
        ("thanks a lot for your help", "thanks", "en"),
        ("bye", "farewell", "en"),
        ("Thanks, goodbye", "farewell", "en"),
        ("Ciao, how are you?", "how_are_you", "en"),
    ],
)
def test_small_talk_is_recognised_in_both_languages(text: str, kind: str, lang: str) -> None:
    found = small_talk(text)
    assert (found.kind, found.lang) == (kind, lang)


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("ciao, qual è il budget?", "qual è il budget?"),
        ("Buongiorno! Quando scade il bando?", "Quando scade il bando?"),
        ("hi, what is the deadline?", "what is the deadline?"),
        ("Thanks! And the budget?", "And the budget?"),
        ("ok grazie, e la scadenza?", "e la scadenza?"),
        # Not cut: "come va" and "si" belong to the question here.
        ("come va presentata la domanda?", "come va presentata la domanda?"),
        ("ciao si può partecipare dalla Svizzera?", "si può partecipare dalla Svizzera?"),
        ("What is the budget? thanks", "What is the budget? thanks"),
        ("How are you funded?", "How are you funded?"),
        ("ok", "ok"),
        ("", ""),
    ],
)
def test_a_real_question_wins_and_loses_only_its_greeting(text: str, rest: str) -> None:
    found = small_talk(text)
    assert found.kind is None and found.rest == rest


def test_a_long_message_is_never_small_talk() -> None:
    assert small_talk("grazie " * 40).kind is None
    assert small_talk("x" * 10_000).kind is None


@given(st.text(max_size=300))
def test_small_talk_takes_any_text(text: str) -> None:
    found = small_talk(text)
    assert found.kind in (None, "greeting", "how_are_you", "thanks", "farewell")
    assert found.lang in (None, "it", "en")
    # The rest is always a piece of the message's end, never invented text.
    assert text.endswith(found.rest)


def test_too_long_reports_the_limits() -> None:
    with pytest.raises(FieldError) as caught:
        validate_field("name", "M" * 150)
    assert caught.value.params == {"max": LIMITS["name"][1], "length": 150}


def test_lone_surrogates_are_replaced_not_crashing() -> None:
    assert clean_surrogates("ok\ud800") == "ok\ufffd"
    assert validate_field("name", "Maria\udc80") == "Maria\ufffd"


def test_validate_draft_needs_every_field() -> None:
    draft = {
        "name": "Maria Rossi",
        "email": "maria@example.org",
        "organisation": "Cluster",
        "country": "Italy",
        "question": "How many partners do we need?",
    }
    assert validate_draft(draft)["country"] == "Italy"
    with pytest.raises(FieldError):
        validate_draft({**draft, "question": None})


@given(st.sampled_from(FIELDS), st.text(max_size=300))
def test_any_text_is_accepted_or_refused_cleanly(field: str, raw: str) -> None:
    try:
        value = validate_field(field, raw)
    except FieldError as exc:
        assert f"err_{exc.code}" in KEYS
        return
    low, high = LIMITS[field]
    assert low <= len(value) <= high or field == "country"
    if field != "question":
        assert "\n" not in value and "\r" not in value


def test_country_list_puts_eu_then_cosme_first() -> None:
    listed = countries.listed()
    assert [c.group for c in listed[:27]] == ["eu"] * 27
    assert {c.code for c in listed[27:]} >= {"IS", "AL", "BA", "XK", "ME", "MK", "RS", "TR"}
    assert {c.code for c in listed[27:]} >= {"AM", "MD", "UA"}
    assert all(countries.by_code(code) is not None for code in countries.COMMON)


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("Italia", "IT"),
        ("ITALY", "IT"),
        ("it", "IT"),
        ("Paesi Bassi", "NL"),
        ("olanda", "NL"),
        ("Bosnia & Herzegovina", "BA"),
        ("bosnia ed erzegovina", "BA"),
        ("macedonia del nord", "MK"),
        ("Kosova", "XK"),
        ("Cechia", "CZ"),
        ("Czech Republic", "CZ"),
        ("UK", "GB"),
        ("Grecia", "GR"),
        ("Other", "OTHER"),
        ("Stati Uniti", "US"),
    ],
)
def test_countries_typed_in_either_language(typed: str, code: str) -> None:
    found = countries.find_country(typed)
    assert found is not None and found.code == code


def test_shipped_texts_have_no_problems() -> None:
    assert check_texts() == []


def test_check_texts_reports_missing_and_one_language_keys(tmp_path: Path) -> None:
    (tmp_path / "it.yaml").write_text("welcome: 'Ciao {{ call_id }}'\nextra: 'x'\n", "utf-8")
    (tmp_path / "en.yaml").write_text("welcome: 'Hello {{ nobody }}'\nhelp: 'Help'\n", "utf-8")
    problems = check_texts(tmp_path)
    joined = "\n".join(problems)
    assert "it.yaml: key 'help' is missing (present in en.yaml)" in joined
    assert "unknown key 'extra'" in joined
    assert "unknown variable(s) nobody" in joined
    assert "key 'summary' is missing in every language" in joined


def test_check_texts_reports_bad_yaml_and_template_errors(tmp_path: Path) -> None:
    (tmp_path / "it.yaml").write_text("welcome: [unclosed\n", "utf-8")
    (tmp_path / "en.yaml").write_text("welcome: '{% if %}'\n", "utf-8")
    joined = "\n".join(check_texts(tmp_path))
    assert "it.yaml: not valid YAML" in joined
    assert "template error" in joined


def test_texts_render_in_both_languages() -> None:
    texts = Texts.load()
    assert texts.get("it", "forget_done", count=1).endswith("(1 richiesta).")
    assert texts.get("en", "forget_done", count=2).endswith("(2 enquiries).")
    from datetime import timedelta

    assert texts.duration("it", timedelta(days=365)) == "365 giorni"
    assert texts.duration("en", timedelta(hours=48)) == "2 days"
    assert texts.duration("en", timedelta(hours=1)) == "1 hour"


@pytest.mark.parametrize(
    ("lang", "typed", "says"),
    [
        ("en", "maria.rossi@example.org", "That looks like an e-mail address"),
        ("it", "maria.rossi@example.org", "Sembra un indirizzo e-mail"),
        ("en", "02 1234567", "name of your organisation in letters"),
        ("it", "02 1234567", "nome della tua organizzazione in lettere"),
    ],
)
def test_the_form_refuses_an_address_or_a_number_as_the_organisation(
    tmp_path: Path, lang: str, typed: str, says: str
) -> None:
    from bot.dialogue.engine import Engine
    from tests.dialogue_support import Chat, load_kb, make_settings, open_db

    settings = make_settings(tmp_path, language=lang)
    chat = Chat(Engine(open_db(settings.database_path), load_kb(), settings), lang_hint=lang)
    chat.cmd("contact")
    chat.say("Maria Rossi")
    chat.say("maria.rossi@example.org")
    chat.say(typed)
    assert says in chat.text
    # Asked again; the right value is taken and the form goes on to the country.
    chat.say("Cluster Lombardia")
    assert "c:IT" in chat.button_ids()
