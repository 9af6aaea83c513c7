"""Mail composition: headers, both parts, both languages, escaping and header safety."""

from __future__ import annotations

import json
from datetime import timedelta
from email import message_from_bytes, policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.mail import compose
from bot.mail.compose import (
    ComposeError,
    Digest,
    DigestItem,
    check_templates,
    digest_mail,
    enquiry_mail,
    mail_delivery,
    reminder_mail,
    sample_enquiry,
)
from tests.smtp_support import T0, make_settings


def _parts(message: object) -> tuple[str, str]:
    plain = message.get_body(("plain",))  # type: ignore[attr-defined]
    html = message.get_body(("html",))  # type: ignore[attr-defined]
    return plain.get_content(), html.get_content()


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("it", ("Nuova richiesta", "Organizzazione", "Come rispondere", "La conversazione con")),
        ("en", ("New enquiry", "Organisation", "How to answer", "The conversation with the bot")),
    ],
)
def test_enquiry_mail_headers_and_parts(tmp_path: Path, lang: str, words: tuple[str, ...]) -> None:
    settings = make_settings(
        tmp_path,
        secretariat={"language": lang, "email": "desk@cluster.example.eu"},
        smtp={"sender": "Call bot <bot@cluster.example.eu>"},
        telegram={"admin_chat_id": -100123},
        timezone="Europe/Rome",
    )
    enquiry = sample_enquiry()
    message = enquiry_mail(settings, enquiry)

    assert message["From"].addresses[0].addr_spec == "bot@cluster.example.eu"
    assert str(message["To"]) == "desk@cluster.example.eu"
    reply_to = message["Reply-To"].addresses[0]
    assert reply_to.addr_spec == "maria.rossi@example.org"
    assert reply_to.display_name == "Maria Rossi & <Co>"
    subject = str(message["Subject"])
    assert subject.startswith("[ECCP-0001] ")
    assert subject.endswith(" (Cluster Lombardo <Meccatronica> & Partners, IT)")
    assert message["Message-ID"].endswith("@cluster.example.eu>")
    assert message.get_content_type() == "multipart/alternative"

    plain, html = _parts(message)
    for text in (plain, html):
        for word in words:
            assert word in text
        assert "maria_rossi" in text  # Telegram username
        assert "1001" in text  # chat id
        # The transcript: both sides, without the stale menu number; the typed address
        # is redacted, its exchange kept.
        assert "Qual è la scadenza?" in text and "Possiamo partecipare con due regioni?" in text
        assert "Il bando si è chiuso il 2 febbraio 2021" in text
        assert text.count("Richiedente" if lang == "it" else "Applicant") == 3
        assert "[e-mail]" in text
        assert "/reply ECCP-0001" in text  # admin chat is configured
        # created 08:30 UTC in January is 09:30 in Rome
        assert "09:30" in text and "Europe/Rome" in text
        assert "Telegram" in text
    assert "maria.rossi@example.org" in plain
    assert "<script>alert(1)</script> & altro" in plain


@pytest.mark.parametrize("lang", ["it", "en"])
def test_html_is_autoescaped(tmp_path: Path, lang: str) -> None:
    settings = make_settings(tmp_path, secretariat={"language": lang})
    _, html = _parts(enquiry_mail(settings, sample_enquiry()))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; altro" in html
    assert "Maria Rossi &amp; &lt;Co&gt;" in html
    assert "Cluster Lombardo &lt;Meccatronica&gt; &amp; Partners" in html


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Maria\r\nBcc: victim@example.com"),
        ("name", "Maria\nRossi"),
        ("organisation", "Acme\r\nX-Evil: 1"),
        ("country", "Italia\n"),
        ("email", "maria@example.org\r\nBcc: x@example.com"),
        ("name", "Maria\u2028Rossi"),
    ],
)
def test_line_breaks_in_header_fields_are_refused(tmp_path: Path, field: str, value: str) -> None:
    settings = make_settings(tmp_path)
    enquiry = {**sample_enquiry(), field: value}
    with pytest.raises(ComposeError):
        enquiry_mail(settings, enquiry)


@pytest.mark.parametrize("email", ["not-an-address", "a@b@example.org", "maria@", "@example.org"])
def test_invalid_reply_to_is_refused(tmp_path: Path, email: str) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(ComposeError):
        enquiry_mail(settings, {**sample_enquiry(), "email": email})


def test_question_may_span_lines(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    message = enquiry_mail(settings, {**sample_enquiry(), "question": "line one\r\nline two"})
    plain, html = _parts(message)
    assert "line one" in plain and "line two" in plain
    assert "line one<br>line two" in html


def test_mail_delivery_fixes_message_id_and_raw(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    message = enquiry_mail(settings, sample_enquiry())
    row = mail_delivery(message, "enquiry", 1)
    assert (row.transport, row.kind, row.enquiry_id) == ("smtp", "enquiry", 1)
    assert row.idempotency_key == message["Message-ID"]
    assert row.sender == "noreply@example.org"
    assert json.loads(row.recipient) == ["segreteria@example.org"]
    raw = row.payload
    assert isinstance(raw, bytes) and raw.isascii() and b"\r\n" in raw
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Message-ID"] == row.idempotency_key
    assert parsed["Reply-To"].addresses[0].addr_spec == "maria.rossi@example.org"
    # A second composition of the same enquiry gets a different id: ids are fixed per row.
    assert enquiry_mail(settings, sample_enquiry())["Message-ID"] != row.idempotency_key


def test_mail_delivery_rejects_unknown_kind(tmp_path: Path) -> None:
    message = enquiry_mail(make_settings(tmp_path), sample_enquiry())
    with pytest.raises(ValueError):
        mail_delivery(message, "spam", None)


@pytest.mark.parametrize("lang", ["it", "en"])
def test_reminder_threads_under_the_enquiry(tmp_path: Path, lang: str) -> None:
    settings = make_settings(tmp_path, secretariat={"language": lang})
    original = "<orig.eccp-0001@example.org>"
    message = reminder_mail(settings, sample_enquiry(), original, 2, T0)
    assert message["In-Reply-To"] == original
    assert message["References"] == original
    assert str(message["Subject"]).startswith("[ECCP-0001] ")
    assert message["Message-ID"] != original
    plain, html = _parts(message)
    assert "2" in plain and "3" in plain  # reminder 2 of max_count 3
    assert "<script>" not in html


@pytest.mark.parametrize("lang", ["it", "en"])
def test_digest_mail(tmp_path: Path, lang: str) -> None:
    settings = make_settings(tmp_path, secretariat={"language": lang})
    items = (
        DigestItem("ECCP-0001", "Org <A> & B", "Italia", "telegram", T0, timedelta(days=3), 2),
        DigestItem("ECCP-0002", "Second", "France", "console", T0, timedelta(hours=5), 0),
    )
    digest = Digest(T0, T0 - timedelta(days=1), items, 4, 1, timedelta(hours=30))
    message = digest_mail(settings, digest)
    plain, html = _parts(message)
    assert plain.index("ECCP-0001") < plain.index("ECCP-0002")
    assert "Org &lt;A&gt; &amp; B" in html and "Org <A> & B" in plain
    assert "1 d 6 h" in plain or "1 g 6 h" in plain  # median 30 h
    assert "3 d 0 h" in plain or "3 g 0 h" in plain
    assert "4" in plain
    assert message["Auto-Submitted"] == "auto-generated"


def test_digest_empty_flag() -> None:
    assert Digest(T0, None).is_empty
    assert not Digest(T0, None, answered_count=1).is_empty


def test_check_templates_is_clean() -> None:
    assert check_templates() == []


def test_check_templates_reports_a_broken_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from bot.resources import templates_dir

    copy = tmp_path / "templates"
    shutil.copytree(templates_dir(), copy)
    (copy / "mail" / "en" / "digest.txt.j2").write_text("{{ missing_variable }}\n")
    monkeypatch.setattr("bot.resources.templates_dir", lambda: copy)
    compose._environments.cache_clear()
    try:
        problems = check_templates()
    finally:
        compose._environments.cache_clear()
    assert any("missing_variable" in problem for problem in problems), problems


_ONE_LINE = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=120
).filter(lambda text: text.strip() != "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_ONE_LINE, organisation=_ONE_LINE, country=_ONE_LINE, question=st.text(max_size=500))
def test_any_one_line_text_composes_a_safe_message(
    name: str, organisation: str, country: str, question: str
) -> None:
    base = make_settings(Path("/nonexistent"))
    enquiry = {
        **sample_enquiry(),
        "name": name,
        "organisation": organisation,
        "country": country,
        "question": question,
    }
    raw = mail_delivery(enquiry_mail(base, enquiry), "enquiry", 1).payload
    assert isinstance(raw, bytes)
    assert raw.isascii()
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n") if line[:1] not in b" \t"]
    assert sorted(set(names)) == sorted(names)  # no header injected or duplicated
    assert set(names) == {
        b"Subject",
        b"From",
        b"To",
        b"Date",
        b"MIME-Version",
        b"Content-Type",
        b"Reply-To",
        b"Message-ID",
        b"X-Clusterbot-Ref",
        b"X-Clusterbot-Kind",
        b"Auto-Submitted",
        b"X-Auto-Response-Suppress",
    }
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Reply-To"].addresses[0].addr_spec == "maria.rossi@example.org"
    shown = parsed["Reply-To"].addresses[0].display_name
    # Header folding may only change the spacing (the stdlib splits long encoded words).
    assert "".join(shown.split()) == "".join(name.split())


# ---------------------------------------------------------------- countries


@pytest.mark.parametrize(
    ("lang", "stored", "shown"),
    [
        ("it", "Italy", "Italia"),
        ("it", "Netherlands", "Paesi Bassi"),
        ("it", "United Kingdom", "Regno Unito"),
        ("it", "Japan", "Giappone"),  # not in the form's list: Babel's name
        ("it", "Other", "Altro"),
        ("it", "Italia", "Italia"),  # stored before countries were normalised
        ("it", "Atlantis", "Atlantis"),  # unknown: as stored
        ("en", "Italy", "Italy"),
        ("en", "Netherlands", "Netherlands"),
    ],
)
def test_country_is_shown_in_the_secretariat_language(
    tmp_path: Path, lang: str, stored: str, shown: str
) -> None:
    settings = make_settings(tmp_path, secretariat={"language": lang})
    enquiry = {**sample_enquiry(), "country": stored}
    label = "Paese:" if lang == "it" else "Country:"
    for message in (enquiry_mail(settings, enquiry), reminder_mail(settings, enquiry, None, 1, T0)):
        plain, html = _parts(message)
        line = next(line for line in plain.splitlines() if line.startswith(label))
        assert line.split(":", 1)[1].strip() == shown
        assert str(message["Subject"]).endswith(f", {compose.country_code(stored)})")
        assert shown in html
    item = DigestItem("ECCP-0001", "Org", stored, "telegram", T0, timedelta(days=1), 0)
    plain, _ = _parts(digest_mail(settings, Digest(T0, None, (item,))))
    assert f"Org ({shown})" in plain


# ---------------------------------------------------------------- serialisation


def _reference_bytes(message: EmailMessage) -> bytes:
    """The same mail built the plain stdlib way (policy.default), serialised by policy.SMTP.

    Call after serialising `message`: its MIME boundary is known by then.
    """
    plain, html = _parts(message)
    # The stdlib's own registry (no memoising), with the Subject folded as compose folds it.
    registry = HeaderRegistry()
    registry.map_to_type("subject", compose.SubjectHeader)
    reference = EmailMessage(policy=policy.default.clone(header_factory=registry))
    for name in ("Subject", "From", "To", "Date"):
        reference[name] = str(message[name])
    reference.set_content(plain, subtype="plain", charset="utf-8", cte="quoted-printable")
    reference.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    for name, value in message.items()[6:]:
        reference[name] = str(value)
    reference.set_boundary(message.get_boundary() or "")
    return reference.as_bytes(policy=policy.SMTP)


@pytest.mark.parametrize("lang", ["it", "en"])
def test_fast_composition_yields_the_stdlib_bytes(tmp_path: Path, lang: str) -> None:
    settings = make_settings(
        tmp_path,
        secretariat={"language": lang},
        smtp={"sender": "Bando Cluster àè <bot@cluster.example.eu>"},
    )
    enquiry = {**sample_enquiry(), "name": "Zoë d'Arco-Łukasiewicz " * 4}
    built = [
        (enquiry_mail(settings, enquiry), "enquiry"),
        (reminder_mail(settings, enquiry, "<orig@example.org>", 2, T0), "reminder"),
    ]
    for message, kind in built:
        names = [name for name, _ in message.items()]
        assert names[:6] == ["Subject", "From", "To", "Date", "MIME-Version", "Content-Type"]
        raw = mail_delivery(message, kind, 1).payload
        assert raw == _reference_bytes(message)
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["From"].addresses[0].display_name == "Bando Cluster àè"


def test_templates_are_compiled_once() -> None:
    templates = compose._environments()
    first = templates.get("it/enquiry.txt.j2")
    assert templates.get("it/enquiry.txt.j2") is first
    assert templates.get("it/enquiry.html.j2", html=True) is not templates.get("it/enquiry.html.j2")
    assert templates.html.autoescape is True and templates.text.autoescape is False


def test_warm_up_compiles_the_templates(tmp_path: Path) -> None:
    compose._environments.cache_clear()
    assert compose.warm_up(make_settings(tmp_path)) == []
    loaded = compose._environments()._loaded
    assert {name for _, name in loaded} >= {"it/enquiry.txt.j2", "it/reminder.html.j2"}
