"""The reply corpus: real-shaped replies of common mail clients, each with its expected answer.

tests/data/replies/NN-client-lang-shape.eml is a reply as a mail client sends it (Gmail,
Outlook, Apple Mail, Thunderbird; Italian and English; plain+HTML, HTML-only; top-posted and
inline); NN-....expected.txt is what the applicant must receive.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.mail.inbound.parse import parse_mail

CORPUS = Path(__file__).parent / "data" / "replies"
MAILS = sorted(CORPUS.glob("*.eml"))


def test_the_corpus_covers_clients_languages_and_shapes() -> None:
    names = [mail.stem for mail in MAILS]
    assert len(names) >= 30
    for client in ("gmail", "outlook", "apple", "thunderbird"):
        assert any(client in name for name in names), client
    assert sum("-it-" in name for name in names) >= 10
    assert sum("-en-" in name for name in names) >= 10
    assert sum("html-only" in name for name in names) >= 6
    assert sum("inline" in name for name in names) >= 3


@pytest.mark.parametrize("mail", MAILS, ids=[mail.stem for mail in MAILS])
def test_extracted_answer(mail: Path) -> None:
    expected = mail.with_name(mail.stem + ".expected.txt").read_text(encoding="utf-8").strip()
    parsed = parse_mail(mail.read_bytes())
    assert parsed.answer == expected
    # A person's reply: never taken for an auto-reply or a bounce.
    assert parsed.automatic is None and not parsed.is_bounce
    # The quoted enquiry (the applicant's details) never leaks into the answer.
    assert "Mario Rossi" not in parsed.answer and "Jane Doe" not in parsed.answer
    assert "noreply@example.org" not in parsed.answer


def test_attachments_are_counted() -> None:
    (mail,) = [m for m in MAILS if "attachment" in m.stem]
    assert parse_mail(mail.read_bytes()).attachments == 1
    others = [m for m in MAILS if "attachment" not in m.stem]
    assert all(parse_mail(m.read_bytes()).attachments == 0 for m in others)
