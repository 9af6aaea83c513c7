"""Secretariat triage (issue 14): subjects, the digest, the transcript, admin-chat texts,
the grouped reminder and the acknowledgement, through the real SMTP test server."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.channels.telegram_admin import AdminCommands
from bot.channels.telegram_render import ChannelTexts
from bot.deliveries.store import enqueue
from bot.dialogue.engine import Engine
from bot.jobs.digest import build_digest
from bot.mail import compose
from bot.mail.compose import (
    acknowledgement_mail,
    digest_mail,
    enquiry_mail,
    grouped_reminder_mail,
    mail_delivery,
)
from bot.settings import Settings
from bot.storage import dumps, open_database, to_iso
from tests import dialogue_support
from tests.smtp_support import (
    T0,
    Received,
    SmtpServer,
    deliver_due,
    insert_enquiry,
    make_settings,
)

LONG_ORGANISATION = (
    "Distretto Tecnologico Regionale per la Meccatronica e le Città Intelligenti della Lombardia"
)
QUESTION = "Our members are in two regions, does that count as one cluster for the call?"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Any]:
    database = open_database(tmp_path / "db.sqlite3")
    yield database
    database.close()


def _text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _html(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


async def _send(
    db: Any, settings: Settings, messages: list[tuple[EmailMessage, str]]
) -> list[Received]:
    """Queue the messages and deliver them to a real SMTP server; what it received."""
    for message, kind in messages:
        with db.conn:
            enqueue(db, mail_delivery(message, kind, None), T0)
    async with SmtpServer() as server:
        live = settings.model_copy(
            update={"smtp": settings.smtp.model_copy(update={"port": server.port})}
        )
        report = await deliver_due(db, live, T0)
    assert report.sent == len(messages), report.errors
    return server.handler.received


# ---------------------------------------------------------------- subjects


async def test_subject_bytes_for_a_long_organisation(tmp_path: Path, db: Any) -> None:
    settings = make_settings(tmp_path, secretariat={"language": "en"})
    enquiry = insert_enquiry(
        db, ref="ECCP-0042", question=QUESTION, organisation=LONG_ORGANISATION, country="Italy"
    )
    [received] = await _send(db, settings, [(enquiry_mail(settings, enquiry), "enquiry")])
    head = received.data.split(b"\r\n\r\n", 1)[0]
    subject = head[head.index(b"Subject:") : head.index(b"\r\nFrom:")]
    assert subject == (
        b"Subject: [ECCP-0042] Our members are in two regions, does that\r\n"
        b" =?utf-8?q?count=E2=80=A6?= (Distretto Tecnologico Regionale per\r\n"
        b" =?utf-8?q?la=E2=80=A6=2C?= IT)"
    )
    assert str(received.message["Subject"]) == (
        "[ECCP-0042] Our members are in two regions, does that count… "
        "(Distretto Tecnologico Regionale per la…, IT)"
    )


_LINE = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=200
).filter(lambda text: text.strip() != "")


@given(organisation=_LINE, question=st.text(min_size=1, max_size=600))
def test_the_reference_always_opens_the_first_subject_line(
    organisation: str, question: str
) -> None:
    settings = make_settings(Path("/nonexistent"))
    enquiry = {**compose.sample_enquiry(), "organisation": organisation, "question": question}
    message = enquiry_mail(settings, enquiry)
    raw = mail_delivery(message, "enquiry", 1).payload
    assert isinstance(raw, bytes)
    head = raw.split(b"\r\n\r\n", 1)[0]
    # The reference is never alone on a "Subject:" line of its own.
    assert re.match(rb"^Subject: \[ECCP-0001\](?: |\r\n )", head)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert re.match(r"^\[ECCP-0001\] ", str(parsed["Subject"]))
    assert str(parsed["Subject"]) == str(message["Subject"])


def test_user_text_with_a_line_break_never_reaches_the_subject(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    bad = {**compose.sample_enquiry(), "organisation": "Org\r\nBcc: victim@example.org"}
    with pytest.raises(compose.ComposeError):
        enquiry_mail(settings, bad)
    # A question may span lines: its first words reach the subject on one line.
    message = enquiry_mail(settings, {**compose.sample_enquiry(), "question": "One\r\nTwo"})
    assert str(message["Subject"]).startswith("[ECCP-0001] One Two (")


# ---------------------------------------------------------------- the digest


async def test_digest_lists_overdue_first_with_question_language_and_channel(
    tmp_path: Path, db: Any
) -> None:
    settings = make_settings(
        tmp_path, secretariat={"language": "en"}, reminders={"first_after": "48h"}
    )
    now = T0 + timedelta(days=5)
    fresh = insert_enquiry(
        db, now=now - timedelta(hours=3), question="Fresh question about travel costs", lang="en"
    )
    old = insert_enquiry(
        db,
        now=now - timedelta(days=4),
        question="Oldest question on regions",
        channel="console",
        forwarded_at=to_iso(now - timedelta(days=4)),
    )
    older = insert_enquiry(
        db, now=now - timedelta(days=3), question="Second oldest on partners", lang="en"
    )
    insert_enquiry(
        db,
        now=now - timedelta(days=2),
        question="Answered one about the budget",
        status="answered",
        answered_at=to_iso(now - timedelta(hours=20)),
        answered_by="admin:42",
    )
    message = digest_mail(settings, build_digest(db, settings, now))
    [received] = await _send(db, settings, [(message, "digest")])
    text = _text(received.message)
    overdue = text.index("OVERDUE (2)")
    assert overdue < text.index(old["ref"]) < text.index(older["ref"])
    assert (
        text.index(older["ref"]) < text.index("Other open enquiries (1)") < text.index(fresh["ref"])
    )
    assert "Oldest question on regions" in text and "Fresh question about travel costs" in text
    assert "Italian · terminal" in text and "English · Telegram" in text
    assert "waiting for 4 d 0 h" in text
    answered = text.index("Answered:")
    assert text.index("Answered one about the budget") > answered
    assert "answered by Telegram 42 after 1 d 4 h" in text
    # Not yet forwarded by e-mail: said per enquiry and in total.
    assert "e-mail still queued" in text and "2 enquiries have not been delivered" in text
    assert str(received.message["Subject"]).startswith("Enquiry digest for")
    assert "overdue 2" in str(received.message["Subject"])
    page = _html(received.message)
    assert page.index(old["ref"]) < page.index(older["ref"]) < page.index(fresh["ref"])


# ---------------------------------------------------------------- the transcript


async def test_the_enquiry_mail_shows_this_conversation_both_sides(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, secretariat={"language": "en"})
    database = dialogue_support.open_db(settings.database_path)
    clock = dialogue_support.Clock()
    engine = Engine(database, dialogue_support.load_kb(), settings, clock=clock)
    chat = dialogue_support.Chat(engine, lang_hint="en", clock=clock)
    chat.say("When is the deadline?")  # an earlier conversation: stays out
    clock.advance(hours=5)
    chat.say("What is the budget?")
    budget_answer = chat.last[0].text
    chat.say("14")  # a stale menu number
    chat.say("mario.rossi@example.org")  # personal data typed outside the form
    chat.say("Can two regions apply together as one cluster?")
    chat.press("fwd")
    chat.say("Mario Rossi")
    chat.say("mario.rossi@example.org")
    chat.say("Cluster Lombardia")
    chat.press("c:IT")
    chat.press("consent:yes")
    chat.press("send")
    [enquiry] = dialogue_support.rows(database, "enquiries")
    assert enquiry["question"] == "Can two regions apply together as one cluster?"
    turns = json.loads(enquiry["faq_history"])
    assert turns[0] == {"q": "What is the budget?", "a": budget_answer, "faq_id": "budget"}
    assert "When is the deadline?" not in [turn["q"] for turn in turns]

    message = enquiry_mail(settings, enquiry)
    [received] = await _send(database, settings, [(message, "enquiry")])
    text = _text(received.message)
    start = text.index("The conversation with the bot")
    transcript = text[start : text.index("How to answer")]
    assert "Applicant: What is the budget?" in transcript
    assert f"Bot (budget): {budget_answer.splitlines()[0]}" in transcript
    assert "deadline" not in transcript.lower()
    assert "14" not in transcript and "@" not in transcript
    # The address typed outside the form: the exchange stays, the address does not.
    assert "Applicant: [e-mail]" in transcript
    # The forwarded question is the enquiry's question, not repeated as a turn.
    assert transcript.count("Applicant:") == 2
    page = _html(received.message)
    assert "What is the budget?" in page and "When is the deadline?" not in page
    database.close()


def test_an_exchange_holding_personal_data_is_kept_redacted(tmp_path: Path) -> None:
    """A question with an address, a phone number or the applicant's name in it is shown,
    in its place, with those replaced; the bot's answer to it is shown too."""
    settings = make_settings(tmp_path, secretariat={"language": "en"})
    enquiry = {
        **compose.sample_enquiry(),
        "name": "Mario Bianchi",
        "faq_history": json.dumps(
            [
                {"q": "What is the budget?", "a": "EUR 6,000,000.", "faq_id": "budget"},
                {
                    "q": "I am Mario Bianchi, mario@cluster.example.it, +39 02 1234 5678: "
                    "when is the deadline?",
                    "a": "The call closed on 2 February 2021.",
                    "faq_id": "deadline",
                },
                {"q": "Is a cluster from Norway eligible?", "a": None, "faq_id": None},
            ]
        ),
    }
    turns = compose.transcript(enquiry, "en")
    assert [turn["q"] for turn in turns] == [
        "What is the budget?",
        "I am [name], [e-mail], [phone]: when is the deadline?",
        "Is a cluster from Norway eligible?",
    ]
    assert turns[1]["a"] == "The call closed on 2 February 2021."
    assert compose.transcript(enquiry, "it")[1]["q"] == (
        "I am [nome], [e-mail], [telefono]: when is the deadline?"
    )
    text = _text(enquiry_mail(settings, enquiry))
    assert "Applicant: I am [name], [e-mail], [phone]: when is the deadline?" in text
    assert "Bot (deadline): The call closed on 2 February 2021." in text
    assert "1234" not in text.split("The conversation with the bot")[1]


def test_old_rows_with_bare_questions_still_show(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, secretariat={"language": "en"})
    enquiry = {
        **compose.sample_enquiry(),
        "faq_history": dumps(["What is the budget?", "3", "Maria Rossi & <Co>"]),
    }
    text = _text(enquiry_mail(settings, enquiry))
    assert "Applicant: What is the budget?" in text
    assert "Applicant: 3" not in text and "Applicant: Maria" not in text


# ---------------------------------------------------------------- admin chat texts


@pytest.mark.parametrize(
    ("lang", "closed", "unknown"),
    [
        ("it", "ECCP-0001 è già chiusa", "Non esiste la richiesta ECCP-0999"),
        ("en", "ECCP-0001 is already closed", "There is no enquiry ECCP-0999"),
    ],
)
def test_admin_errors_speak_the_secretariats_language(
    tmp_path: Path, db: Any, lang: str, closed: str, unknown: str
) -> None:
    settings = make_settings(tmp_path, secretariat={"language": lang})
    insert_enquiry(db, status="closed", closed_at=to_iso(T0))
    admin = AdminCommands(db, settings, ChannelTexts.load())
    [reply] = admin.command("reply", "ECCP-0001 Yes you can", user_id=1, chat_id=-5, now=T0)
    assert closed in html.unescape(reply.html)
    [reply] = admin.command("close", "ECCP-0999", user_id=1, chat_id=-5, now=T0)
    assert unknown in html.unescape(reply.html)


# ---------------------------------------------------------------- grouped reminder, acknowledgement


async def test_a_grouped_reminder_names_each_reference(tmp_path: Path, db: Any) -> None:
    settings = make_settings(tmp_path, secretariat={"language": "it"})
    first = insert_enquiry(db, now=T0 - timedelta(days=3), question="Prima domanda sui partner")
    second = insert_enquiry(db, now=T0 - timedelta(days=2), question="Seconda domanda sul budget")
    message = grouped_reminder_mail(settings, [(second, 1), (first, 2)], T0, ["<a@example.org>"])
    [received] = await _send(db, settings, [(message, "reminders")])
    subject = str(received.message["Subject"])
    assert subject == "[ECCP] Promemoria: 2 richieste senza risposta: ECCP-0001, ECCP-0002"
    assert received.message["X-Clusterbot-Refs"] == "ECCP-0001, ECCP-0002"
    text = _text(received.message)
    assert "ECCP-0001 – promemoria 2 di 3" in text and "ECCP-0002 – promemoria 1 di 3" in text
    assert "Prima domanda sui partner" in text and "Seconda domanda sul budget" in text
    assert received.rcpt_tos == ["segreteria@example.org"]


@pytest.mark.parametrize(
    ("lang", "subject", "words"),
    [
        ("it", "[ECCP-0001] Abbiamo ricevuto la tua domanda", ("Cosa succede ora", "/status")),
        ("en", "[ECCP-0001] We have received your question", ("What happens next", "/status")),
    ],
)
async def test_the_acknowledgement_goes_to_the_applicant_in_their_language(
    tmp_path: Path, db: Any, lang: str, subject: str, words: tuple[str, ...]
) -> None:
    settings = make_settings(tmp_path, secretariat={"language": "it"})
    enquiry = insert_enquiry(db, lang=lang, question="Possiamo partecipare?\nGrazie")
    [received] = await _send(
        db, settings, [(acknowledgement_mail(settings, enquiry), "acknowledgement")]
    )
    assert received.rcpt_tos == ["maria@example.org"]
    assert str(received.message["Subject"]) == subject
    assert received.message["Reply-To"] == "segreteria@example.org"
    assert received.message["Auto-Submitted"] == "auto-generated"
    text = _text(received.message)
    assert "ECCP-0001" in text and "Possiamo partecipare?\r\nGrazie" in text
    for word in words:
        assert word in text


# ---------------------------------------------------------------- e-mail typos


def _form_chat(tmp_path: Path) -> tuple[dialogue_support.Chat, Any]:
    settings = dialogue_support.make_settings(tmp_path / "data")
    database = dialogue_support.open_db(settings.database_path)
    engine = Engine(database, dialogue_support.load_kb(), settings, clock=dialogue_support.Clock())
    chat = dialogue_support.Chat(engine, lang_hint="en")
    chat.cmd("contact")
    chat.say("Mario Rossi")
    return chat, database


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        ("mail:fix", "mario.rossi@gmail.com"),
        ("mail:keep", "mario.rossi@gmial.con"),
    ],
)
def test_a_likely_typo_in_the_domain_is_asked_about(tmp_path: Path, answer: str, kept: str) -> None:
    chat, database = _form_chat(tmp_path)
    chat.say("mario.rossi@gmial.con")
    assert "Did you mean mario.rossi@gmail.com?" in chat.text
    assert chat.button_ids() == ["mail:fix", "mail:keep"]
    chat.press(answer)
    assert "organisation" in chat.text.lower()
    chat.say("Cluster Lombardia")
    chat.press("c:IT")
    chat.say("Can two regions apply together?")
    chat.press("consent:yes")
    assert f"E-mail: {kept}" in chat.text
    database.close()


def test_typing_another_address_at_the_hint_replaces_it(tmp_path: Path) -> None:
    chat, database = _form_chat(tmp_path)
    chat.say("mario@hotmial.it")
    assert "mario@hotmail.it" in chat.text
    chat.say("yes")  # typed, like the button
    assert "organisation" in chat.text.lower()
    chat.cmd("contact")
    database.close()
    chat2, database2 = _form_chat(tmp_path / "second")
    chat2.say("mario@hotmial.it")
    chat2.say("mario.rossi@example.org")  # a fresh address: no hint, on to the next step
    assert "organisation" in chat2.text.lower()
    database2.close()


@pytest.mark.parametrize(
    ("address", "suggestion"),
    [
        ("mario.rossi@gmial.con", "mario.rossi@gmail.com"),
        ("anna@libero.itt", "anna@libero.it"),
        ("p@cluster-lombardo.con", "p@cluster-lombardo.com"),
        ("x@outlok.com", "x@outlook.com"),
        ("x@gmail.com", None),
        ("x@unimi.it", None),
        ("x@gmx.de", None),
        ("x@example.org", None),
    ],
)
def test_domain_suggestions(address: str, suggestion: str | None) -> None:
    from bot.mail.address_typos import suggest_address

    assert suggest_address(address) == suggestion


# ---------------------------------------------------------------- internationalised addresses


@pytest.mark.parametrize(
    ("smtp", "offered", "accepted"),
    [
        ({"host": ""}, None, True),  # the embedded mail store speaks SMTPUTF8
        ({"host": "mail.example.org", "port": 587}, None, False),  # not known yet: refused
        ({"host": "mail.example.org", "port": 587}, True, True),
        ({"host": "mail.example.org", "port": 587}, False, False),
    ],
)
def test_an_internationalised_address_needs_smtputf8(
    tmp_path: Path, smtp: dict[str, Any], offered: bool | None, accepted: bool
) -> None:
    from bot.mail.smtputf8 import record_smtputf8

    settings = dialogue_support.make_settings(tmp_path / "data", smtp=smtp)
    database = dialogue_support.open_db(settings.database_path)
    if offered is not None:
        record_smtputf8(database, settings, offered)
    engine = Engine(database, dialogue_support.load_kb(), settings, clock=dialogue_support.Clock())
    chat = dialogue_support.Chat(engine, lang_hint="en")
    chat.cmd("contact")
    chat.say("José García")
    chat.say("josé.garcía@ejemplo.es")
    if accepted:
        assert "organisation" in chat.text.lower()
        chat.say("Cluster Andaluz")
        chat.press("c:ES")
        chat.say("Can two regions apply together?")
        chat.press("consent:yes")
        assert "E-mail: josé.garcía@ejemplo.es" in chat.text
    else:
        assert "accented letters before the @" in chat.text
        assert "not a valid" not in chat.text and "doesn't look like" not in chat.text
        chat.say("jose.garcia@ejemplo.es")
        assert "organisation" in chat.text.lower()
    database.close()


def test_a_server_change_forgets_what_the_old_one_offered(tmp_path: Path) -> None:
    from bot.mail.smtputf8 import record_smtputf8, smtputf8_offered

    old = make_settings(tmp_path, smtp={"host": "old.example.org"})
    new = make_settings(tmp_path, smtp={"host": "new.example.org"})
    database = open_database(tmp_path / "db.sqlite3")
    record_smtputf8(database, old, True)
    assert smtputf8_offered(database, old) and not smtputf8_offered(database, new)
    database.close()


# ---------------------------------------------------------------- B: wired into the product


def _forwarded(db: Any, settings: Settings, at: Any, **fields: Any) -> dict[str, Any]:
    from tests.smtp_support import queue_enquiry_mail

    enquiry = insert_enquiry(db, now=at, forwarded_at=to_iso(at), **fields)
    queue_enquiry_mail(db, settings, enquiry, at)
    db.execute("UPDATE deliveries SET status = 'sent' WHERE enquiry_id = ?", [enquiry["id"]])
    return enquiry


async def _deliver_queued(db: Any, settings: Settings, server: SmtpServer) -> None:
    from bot.deliveries.smtp import SmtpTarget, SmtpTransport
    from bot.deliveries.worker import Worker
    from bot.enquiries import DeliveryRules

    live = settings.model_copy(
        update={"smtp": settings.smtp.model_copy(update={"port": server.port})}
    )
    worker = Worker(db, [SmtpTransport(SmtpTarget.from_settings(live))], hook=DeliveryRules(live))
    await worker.deliver_due()


async def test_reminders_due_in_one_round_go_out_as_one_mail(tmp_path: Path, db: Any) -> None:
    from bot.jobs.reminders import send_reminders

    settings = make_settings(
        tmp_path, secretariat={"language": "en"}, reminders={"first_after": "48h"}
    )
    first = _forwarded(db, settings, T0, question="First: can SMEs lead?")
    second = _forwarded(db, settings, T0 + timedelta(hours=1), question="Second: lump sums?")
    later = _forwarded(db, settings, T0 + timedelta(days=2), question="Too recent")
    assert send_reminders(db, settings, T0 + timedelta(hours=50)) == [
        first["ref"],
        second["ref"],
    ]
    async with SmtpServer() as server:
        await _deliver_queued(db, settings, server)
    [mail] = [r.message for r in server.handler.received]
    assert mail["X-Clusterbot-Kind"] == "reminders"
    assert mail["X-Clusterbot-Refs"] == f"{first['ref']}, {second['ref']}"
    subject = str(mail["Subject"])
    assert first["ref"] in subject and second["ref"] in subject and later["ref"] not in subject
    text = _text(mail)
    assert "First: can SMEs lead?" in text and "Second: lump sums?" in text
    # Each enquiry counts its own reminders, audited one by one.
    counts = {row["ref"]: row["reminder_count"] for row in db.query("SELECT * FROM enquiries")}
    assert counts == {first["ref"]: 1, second["ref"]: 1, later["ref"]: 0}
    audits = [row["ref"] for row in db.query("SELECT ref FROM audit WHERE event = 'reminded'")]
    assert sorted(audits) == sorted([first["ref"], second["ref"]])


async def test_per_enquiry_reminders_remain_a_setting(tmp_path: Path, db: Any) -> None:
    from bot.jobs.reminders import send_reminders

    settings = make_settings(tmp_path, reminders={"first_after": "48h", "grouped": False})
    first = _forwarded(db, settings, T0)
    second = _forwarded(db, settings, T0)
    send_reminders(db, settings, T0 + timedelta(hours=48))
    async with SmtpServer() as server:
        await _deliver_queued(db, settings, server)
    refs = sorted(str(r.message["X-Clusterbot-Ref"]) for r in server.handler.received)
    assert refs == sorted([first["ref"], second["ref"]])
    assert {r.message["X-Clusterbot-Kind"] for r in server.handler.received} == {"reminder"}


def test_erasure_withdraws_a_queued_grouped_reminder_and_requeues_the_others(
    tmp_path: Path, db: Any
) -> None:
    from bot.enquiries import forget_user
    from bot.jobs.reminders import send_reminders

    settings = make_settings(tmp_path, reminders={"first_after": "48h"})
    gone = _forwarded(db, settings, T0, user_id="77", organisation="Erased Org")
    kept = _forwarded(db, settings, T0, user_id="88", organisation="Kept Org")
    send_reminders(db, settings, T0 + timedelta(hours=48))
    forget_user(db, "telegram", "77", now=T0 + timedelta(hours=49), settings=settings)
    queued = list(
        db.query("SELECT * FROM deliveries WHERE kind = 'reminders' AND status = 'queued'")
    )
    assert len(queued) == 1
    raw = queued[0]["payload"]
    assert b"Erased Org" not in raw and gone["ref"].encode() not in raw
    assert kept["ref"].encode() in raw and b"Kept Org" in raw
    cancelled = db.execute(
        "SELECT payload FROM deliveries WHERE kind = 'reminders' AND status = 'cancelled'"
    ).fetchall()
    assert cancelled == [(None,)]


async def test_confirming_sends_the_applicant_an_acknowledgement(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, secretariat={"language": "it"})
    database = dialogue_support.open_db(settings.database_path)
    engine = Engine(database, dialogue_support.load_kb(), settings, clock=dialogue_support.Clock())
    chat = dialogue_support.Chat(engine, lang_hint="en")
    chat.cmd("contact")
    chat.say("Mario Rossi")
    chat.say("mario.rossi@example.org")
    chat.say("Cluster Lombardia")
    chat.press("c:IT")
    chat.say("Can two regions apply together?")
    chat.press("consent:yes")
    chat.press("send")
    ref = re.search(r"ECCP-\d{4}", chat.text)
    assert ref is not None
    async with SmtpServer() as server:
        await _deliver_queued(database, settings, server)
    by_kind = {str(r.message["X-Clusterbot-Kind"]): r for r in server.handler.received}
    ack = by_kind["acknowledgement"]
    assert ack.rcpt_tos == ["mario.rossi@example.org"]
    # In the applicant's language (English), though the secretariat reads Italian.
    assert str(ack.message["Subject"]) == f"[{ref.group(0)}] We have received your question"
    text = _text(ack.message)
    assert ref.group(0) in text and "Can two regions apply together?" in text
    assert "What happens next" in text and "How to follow up" in text
    assert by_kind["enquiry"].rcpt_tos == ["segreteria@example.org"]
    database.close()


async def test_an_acknowledgement_reaches_an_internationalised_address(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, secretariat={"language": "en"})
    database = open_database(tmp_path / "db.sqlite3")
    enquiry = insert_enquiry(database, email="josé.garcía@ejemplo.es", lang="en")
    from bot.deliveries import store
    from bot.mail.compose import mail_delivery

    store.enqueue(
        database, mail_delivery(acknowledgement_mail(settings, enquiry), "acknowledgement", 1), T0
    )
    async with SmtpServer(smtputf8=True) as server:
        await _deliver_queued(database, settings, server)
    [received] = server.handler.received
    assert received.rcpt_tos == ["josé.garcía@ejemplo.es"]
    # UTF-8 headers (RFC 6532): the address as typed, not an encoded word.
    assert "To: Maria Rossi <josé.garcía@ejemplo.es>".encode() in received.data
    parsed = message_from_string(received.data.decode("utf-8"), policy=policy.default)
    assert parsed["To"].addresses[0].username == "josé.garcía"
    database.close()


async def test_without_smtputf8_such_a_mail_is_refused_plainly(tmp_path: Path) -> None:
    from bot.deliveries import store
    from bot.mail.compose import mail_delivery

    settings = make_settings(tmp_path, secretariat={"language": "en"})
    database = open_database(tmp_path / "db.sqlite3")
    enquiry = insert_enquiry(database, email="josé.garcía@ejemplo.es", lang="en")
    store.enqueue(
        database, mail_delivery(acknowledgement_mail(settings, enquiry), "acknowledgement", 1), T0
    )
    async with SmtpServer() as server:
        await _deliver_queued(database, settings, server)
    assert server.handler.received == []
    [row] = database.query("SELECT status, last_error FROM deliveries")
    assert row["status"] == "dead" and "SMTPUTF8" in row["last_error"]
    database.close()
