"""Issue 14's dialogue parts: the form's rough edges, the GDPR notice, the call's standing.

Driven through the engine (a real SQLite file), the terminal (`clusterbot chat` on a pipe)
and `clusterbot check`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from bot.dialogue.engine import Engine
from bot.settings.load import SettingsError
from tests.dialogue_support import (
    Chat,
    Clock,
    KeywordKB,
    fill_form,
    load_kb,
    make_settings,
    open_db,
    rows,
)

CLUSTERBOT = Path(sys.executable).parent / "clusterbot"
PRIVACY = {
    "controller": "Distretto Esempio S.c.a.r.l., Via Roma 1, 00100 Roma",
    "contact": "privacy@distretto.example",
    "dpo": "dpo@distretto.example",
    "supervisory_authority": "Garante per la protezione dei dati personali",
}


@pytest.fixture(scope="module")
def kb() -> KeywordKB:
    """The shipped knowledge base (loaded once) with a keyword matcher."""
    return load_kb()


class Env:
    """An engine on a real SQLite file with a hand-moved clock."""

    def __init__(self, tmp_path: Path, kb: KeywordKB, **overrides: Any) -> None:
        self.settings = make_settings(tmp_path / "data", **overrides)
        self.db: sqlite_utils.Database = open_db(self.settings.database_path)
        self.clock = Clock()
        self.engine = Engine(self.db, kb, self.settings, clock=self.clock)

    def chat(self, user_id: str = "u1", **kwargs: Any) -> Chat:
        """A conversation for one user."""
        return Chat(self.engine, user_id=user_id, clock=self.clock, **kwargs)

    def session(self, user_id: str = "u1") -> dict[str, Any]:
        """The user's stored session state."""
        found = self.db.conn.execute(
            "SELECT state FROM sessions WHERE user_id = ?", (user_id,)
        ).fetchone()
        return {} if found is None else dict(json.loads(found[0]))


@pytest.fixture
def env(tmp_path: Path, kb: KeywordKB) -> Iterator[Env]:
    """An engine with default settings."""
    made = Env(tmp_path, kb)
    yield made
    made.db.close()


def _to_country(chat: Chat) -> None:
    chat.cmd("contact")
    for value in ("Maria Rossi", "maria@example.org", "Cluster Nord"):
        chat.say(value)


# ---------------------------------------------------------------- "Other" country


@pytest.mark.parametrize("how", ["button", "typed other", "typed altro", "typed label"])
def test_a_country_outside_the_list_is_asked_by_name(env: Env, how: str) -> None:
    chat = env.chat(lang_hint="en")
    _to_country(chat)
    if how == "button":
        chat.press("c:OTHER")
    elif how == "typed other":
        chat.say("other")
    elif how == "typed altro":
        chat.say("Altro")
    else:
        chat.say("Outside the list")
    assert "Please type its name" in chat.text
    assert env.session()["step"] == "country_other"
    assert "country" not in env.session().get("draft", {})
    chat.say("Brasile")
    assert "What is your question" in chat.text
    chat.say("Can a Brazilian cluster join a partnership?")
    chat.press("consent:yes")
    assert "Country: Brazil" in chat.text
    chat.press("send")
    (enquiry,) = rows(env.db, "enquiries")
    assert enquiry["country"] == "Brazil"


@pytest.mark.parametrize("typed", ["other", "Atlantis", "Fuori dall'elenco"])
def test_the_country_name_step_refuses_what_is_not_a_country(env: Env, typed: str) -> None:
    chat = env.chat(lang_hint="en")
    _to_country(chat)
    chat.press("c:OTHER")
    chat.say(typed)
    assert "I don't recognise that country name" in chat.text
    assert "Please type its name" in chat.last[-1].text
    assert env.session()["step"] == "country_other"


def test_changing_the_country_from_the_summary_to_one_outside_the_list(env: Env) -> None:
    chat = env.chat(lang_hint="en")
    fill_form(chat)
    chat.press("edit")
    chat.press("edit:country")
    chat.press("c:OTHER")
    chat.say("Norway")
    # Straight back to the summary, not through the whole form again.
    assert chat.last[0].title == "Your enquiry" and "Country: Norway" in chat.text


def test_the_country_menu_labels_say_what_they_lead_to(env: Env) -> None:
    for lang, more, other in (
        ("en", "Another EU or COSME country", "Outside the list"),
        ("it", "Un altro paese UE o COSME", "Fuori dall'elenco"),
    ):
        chat = env.chat(user_id=f"labels-{lang}", lang_hint=lang)
        chat.cmd("language", lang)
        _to_country(chat)
        labels = {button.id: button.label for button in chat.buttons}
        assert (labels["c:more"], labels["c:OTHER"]) == (more, other)
        chat.press("c:more")
        assert chat.buttons[-1].label == other


# ---------------------------------------------------------------- numbers


def test_a_stale_menu_number_outside_the_form_is_not_a_question(env: Env) -> None:
    chat = env.chat(lang_hint="en")
    chat.say("14")
    assert chat.last[0].text == (
        "There is no option 14: choose from the list or type your question."
    )
    assert "contact" in chat.button_ids() and "fwd" not in chat.button_ids()
    assert rows(env.db, "faq_log") == [] and "faq" not in env.session()
    chat.cmd("language", "it")
    chat.say("3.")
    assert chat.last[0].text == ("Non c'è l'opzione 3: scegli dall'elenco o scrivi la tua domanda.")


def test_a_number_at_a_step_without_a_menu_is_not_taken_as_the_answer(env: Env) -> None:
    chat = env.chat(lang_hint="en")
    chat.cmd("contact")
    chat.say("2")
    assert "There is no list of options here" in chat.text
    assert "too short" not in chat.text
    assert "What is your name?" in chat.last[-1].text
    for value in ("Maria Rossi", "maria@example.org", "Cluster Nord", "Italy"):
        chat.say(value)
    chat.say("3")  # a topic number, typed where the question is asked
    assert "There is no list of options here" in chat.text and "too short" not in chat.text
    assert env.session()["step"] == "question"


def test_numbers_choose_from_the_menu_where_the_step_has_one(env: Env) -> None:
    chat = env.chat(lang_hint="en")
    _to_country(chat)
    first = chat.buttons[0]
    chat.say("99")
    assert chat.last[0].text == "There is no option 99: please choose from the list."
    assert chat.buttons[0] == first  # the menu again
    chat.say("1")
    assert env.session()["draft"]["country"] == "Italy"
    chat.say("How many partners must a consortium have?")
    chat.say("1")  # I agree
    assert chat.last[0].title == "Your enquiry"
    chat.say("1")  # Send
    assert "ECCP-0001" in chat.text


# ---------------------------------------------------------------- language after /forget


@pytest.mark.parametrize("how", ["chosen", "detected"])
def test_the_conversation_language_survives_forget(env: Env, how: str) -> None:
    chat = env.chat()  # a channel without a language hint, default Italian
    if how == "chosen":
        chat.cmd("language", "en")
    else:
        chat.say("Hello, what is the budget of the call?")
    fill_form(chat)
    chat.cmd("forget")
    chat.press("forget:yes")
    assert "Done: your data has been erased" in chat.text
    chat.cmd("help")
    assert chat.text.startswith("Type a question in your own words")
    chat.say("mmm")
    assert "I didn't catch that" in chat.text or "I don't have a sure answer" in chat.text
    assert "Maria" not in json.dumps(env.session())


# ---------------------------------------------------------------- privacy notice


def test_the_privacy_notice_names_controller_contact_dpo_basis_rights_and_authority(
    tmp_path: Path, kb: KeywordKB
) -> None:
    env = Env(tmp_path, kb, privacy=PRIVACY)
    chat = env.chat(lang_hint="en")
    chat.cmd("privacy")
    text = chat.text
    for expected in (
        "Data controller: Distretto Esempio S.c.a.r.l., Via Roma 1, 00100 Roma",
        "privacy@distretto.example",
        "Data protection officer: dpo@distretto.example. Contact about your data: privacy@",
        "privacy@distretto.example.\nWhat I store",
        "Legal basis: your consent",
        "access",
        "corrected",
        "erased",
        "withdraw your consent",
        "complaint with the supervisory authority: Garante per la protezione dei dati",
        "for 365 days after your enquiry is answered or closed",
    ):
        assert expected in text, expected
    chat.cmd("language", "it")
    chat.cmd("privacy")
    for expected in (
        "Titolare del trattamento: Distretto Esempio",
        "Responsabile della protezione dei dati (RPD): dpo@distretto.example",
        "Base giuridica: il tuo consenso",
        "l'accesso ai tuoi dati, la rettifica o la cancellazione",
        "revocare il consenso",
        "reclamo all'autorità di controllo: Garante per la protezione dei dati personali",
    ):
        assert expected in chat.text, expected


def test_an_unconfigured_notice_names_the_secretariat_and_never_a_placeholder(
    tmp_path: Path, kb: KeywordKB
) -> None:
    env = Env(
        tmp_path,
        kb,
        privacy={"controller": "CHANGE ME: organisation", "contact": "", "dpo": ""},
    )
    chat = env.chat(lang_hint="en")
    fill_form(chat, question="Can a cluster apply twice?")
    chat.press("edit")  # the notice before consent is the same text
    chat.cmd("privacy")
    text = chat.text
    assert "CHANGE ME" not in text and "Data protection officer" not in text
    assert "Contact about your data: segreteria@example.org.\nWhat I store" in text
    assert "Data controller: the call secretariat (segreteria@example.org)" in text
    assert "supervisory authority: Garante per la protezione dei dati personali" in text


def test_privacy_values_must_be_one_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        make_settings(tmp_path, privacy={"controller": "Line one\nBcc: x"})
    assert any("privacy.controller" in problem for problem in caught.value.problems)


def test_declining_consent_offers_to_go_back_to_the_summary(env: Env) -> None:
    chat = env.chat(lang_hint="en")
    _to_country(chat)
    chat.press("c:IT")
    chat.say("How many partners must a consortium have?")
    chat.press("consent:no")
    assert chat.button_ids() == ["declined:back", "declined:discard"]
    assert rows(env.db, "enquiries") == []
    chat.say("back")
    assert chat.last[0].title == "Your enquiry" and "Country: Italy" in chat.text
    # Sending still needs consent: the notice comes first, then the summary again.
    chat.press("send")
    assert "consent:yes" in chat.button_ids() and rows(env.db, "enquiries") == []
    chat.press("consent:yes")
    chat.press("send")
    assert "ECCP-0001" in chat.text


def test_declining_then_discarding_in_italian(env: Env) -> None:
    chat = env.chat()
    _to_country(chat)
    chat.press("c:IT")
    chat.say("Quanti partner servono per un consorzio?")
    chat.say("non acconsento")
    assert "Vuoi tornare al riepilogo" in chat.text
    chat.say("Scartala")
    assert "non ho conservato né inviato nulla" in chat.text
    assert "draft" not in env.session()


# ---------------------------------------------------------------- the greeting


@pytest.mark.parametrize(
    ("now", "lang", "expected"),
    [
        (
            datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
            "en",
            "The call is closed: it closed on 2 February 2021, 17:00 Brussels time",
        ),
        (
            datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
            "it",
            "Il bando è chiuso: ha chiuso il 2 febbraio 2021, ore 17:00 (ora di Bruxelles)",
        ),
        (datetime(2021, 1, 20, 9, 0, tzinfo=UTC), "en", "The call is open: 13 days left"),
        (datetime(2021, 1, 20, 9, 0, tzinfo=UTC), "it", "Il bando è aperto: mancano 13 giorni"),
        (datetime(2021, 2, 1, 9, 0, tzinfo=UTC), "en", "The call is open: 1 day left"),
        (datetime(2021, 2, 2, 9, 0, tzinfo=UTC), "en", "The call is open: it closes today"),
        (
            datetime(2020, 10, 1, 9, 0, tzinfo=UTC),
            "en",
            "The call is not open yet: it opens on 3 November 2020",
        ),
    ],
)
def test_the_greeting_says_where_the_call_stands(
    env: Env, now: datetime, lang: str, expected: str
) -> None:
    env.clock.now = now
    chat = env.chat(lang_hint=lang)
    chat.step_seconds = 0
    chat.cmd("start")
    assert expected in chat.text
    # ... and what the bot can do.
    assert "/status" in chat.text and "COS-CLUSTER-2020-3-03" in chat.text
    # A greeting typed instead of /start (a web chat opens that way) says it too.
    chat.say("Ciao" if lang == "it" else "Hello")
    assert expected in chat.text


# ---------------------------------------------------------------- terminal and check


def _chat(cwd: Path, script: str, user: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLUSTERBOT_USER": user}
    env.pop("CLUSTERBOT_CONFIG", None)
    return subprocess.run(
        [str(CLUSTERBOT), "chat"],
        input=script,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=90,
        check=False,
    )


def test_the_terminal_form_outside_the_list_stale_numbers_and_declining(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "/language en",
            "Can I bring my dog to the info day?",
            "14",  # two options are shown: 14 is a stale number
            "/contact",
            "Maria Rossi",
            "maria@example.org",
            "Cluster Nord",
            "10",  # Outside the list
            "Norway",
            "Do Norwegian clusters qualify?",
            "2",  # I don't agree
            "1",  # Back to the summary
            "1",  # Send: consent first
            "1",  # I agree
            "1",  # Send
            "",
        ]
    )
    done = _chat(tmp_path, script, "care")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # The console greets before reading the script: in the default language, Italian.
    assert "Il bando è chiuso: ha chiuso il 2 febbraio 2021" in out
    assert "There is no option 14: choose from the list or type your question." in out
    assert "10) Outside the list" in out and "9) Another EU or COSME country" in out
    assert "Please type its name" in out
    assert "1) Back to the summary" in out and "2) Discard it" in out
    assert "Your reference is ECCP-0001" in out
    db = sqlite_utils.Database(tmp_path / "var" / "clusterbot.sqlite3")
    try:
        (enquiry,) = db["enquiries"].rows
    finally:
        db.close()
    assert enquiry["country"] == "Norway"


def test_the_terminal_keeps_english_after_forget(tmp_path: Path) -> None:
    script = "Hello, what is the budget of the call?\n/forget\n1\n/help\n"
    done = _chat(tmp_path, script, "forgetful")
    assert done.returncode == 0, done.stderr
    after = done.stdout.split("Done: your data has been erased", 1)[1]
    assert "Type a question in your own words" in after


def test_check_warns_about_privacy_placeholders_until_they_are_set(
    tmp_path: Path, repo_root: Path
) -> None:
    example = repo_root / "config" / "clusterbot.example.toml"
    done = subprocess.run(
        [str(CLUSTERBOT), "check", "--config", str(example)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "clusterbot: warning: [privacy] controller is not set" in done.stderr
    assert "clusterbot: warning: [privacy] contact is not set" in done.stderr
    assert "warnings above" in done.stdout
    text = example.read_text(encoding="utf-8")
    for key, value in PRIVACY.items():
        text = text.replace(
            next(line for line in text.splitlines() if line.startswith(f"{key} =")),
            f'{key} = "{value}"',
        )
    configured = tmp_path / "set.toml"
    configured.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [str(CLUSTERBOT), "check", "--config", str(configured)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr and done.stdout.splitlines()[-1].startswith("OK")
