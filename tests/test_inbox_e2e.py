"""The whole loop, with real parts only: Telegram (Bot API stand-in), SMTP (aiosmtpd) and the
bot's mailbox (mail-devel IMAP on loopback). The secretariat presses Reply; the applicant gets
the answer in the chat and by e-mail; the applicant's reply goes back to the secretariat."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from imap_support import PASSWORD, USER, imap_server
from smtp_support import SmtpServer
from telegram_harness import make_settings, running_bot, until
from telegram_standin import BotApiStandIn
from test_telegram import fill_form

from bot.enquiries import answer_enquiry, get_enquiry
from bot.jobs.reminders import due_reminders
from bot.storage import utc_now

STAFF = "anna.bianchi@segreteria-eccp.eu"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[BotApiStandIn]:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    with BotApiStandIn() as standin:
        yield standin
        assert standin.rejected() == [], [(r.method, r.response) for r in standin.rejected()]


def _reply_to(original: EmailMessage, sender: str, body: str, message_id: str) -> bytes:
    """What a mail client sends when `sender` presses Reply on `original`."""
    reply = EmailMessage()
    reply["From"] = sender
    reply["To"] = original["Reply-To"]
    reply["Subject"] = f"Re: {original['Subject']}"
    reply["Message-ID"] = message_id
    reply["In-Reply-To"] = original["Message-ID"]
    reply["References"] = original["Message-ID"]
    quoted = "\n".join(
        f"> {line}" for line in original.get_body(("plain",)).get_content().split("\n")
    )
    reply.set_content(
        f"{body}\n\nOn Thu, 26 Nov 2026 at 10:00, Cluster call bot wrote:\n{quoted}\n"
    )
    return reply.as_bytes(policy=SMTP)


async def test_reply_by_e_mail_reaches_the_applicant_and_back(
    tmp_path: Path, api: BotApiStandIn
) -> None:
    async with SmtpServer() as smtp, imap_server() as imap:
        settings = make_settings(
            tmp_path,
            api,
            smtp_port=smtp.port,
            secretariat={"language": "en", "answer_from": ["@segreteria-eccp.eu"]},
            inbox={
                "host": imap.host,
                "port": imap.port,
                "security": "none",
                "username": USER,
                "password": PASSWORD,
                "reply_address": "bot@example.org",
                "timeout": "20s",
            },
        )
        async with running_bot(settings, api) as h:
            user = 1001
            await h.say(user, "/start")
            ref = await fill_form(h, user, "Can a cluster from Norway lead the consortium?")
            enquiry_mail = (await until(lambda: smtp.handler.received, what="the enquiry e-mail"))[
                0
            ].message
            assert enquiry_mail["Reply-To"].startswith(f"bot+{ref}.")
            assert "enquiries close" not in enquiry_mail.get_body(("plain",)).get_content()

            # Anna presses Reply in her mail client; the reply lands in the bot's mailbox.
            before = len(api.bot_messages(user))
            await imap.deliver(
                _reply_to(
                    enquiry_mail,
                    f"Anna Bianchi <{STAFF}>",
                    "Yes: Norway takes part in COSME, so it can lead.\n\nBest regards,\nAnna",
                    "<anna-1@segreteria-eccp.eu>",
                )
            )
            relayed = (await h.messages(user, before + 1, limit=60))[before:]
            assert ref in relayed[0].text
            assert "Norway takes part in COSME, so it can lead." in relayed[0].text
            assert "Best regards" not in relayed[0].text and "wrote:" not in relayed[0].text

            # And by e-mail, from the bot, their question quoted, no secretariat address.
            answer = await until(
                lambda: next(
                    (
                        r
                        for r in smtp.handler.received
                        if "ada@example.org" in r.rcpt_tos
                        and r.message["X-Clusterbot-Kind"] != "acknowledgement"
                    ),
                    None,
                ),
                limit=60,
                what="the answer e-mail",
            )
            assert ref in answer.message["Subject"]
            text = answer.message.get_body(("plain",)).get_content()
            assert "Norway takes part in COSME" in text
            assert "> Can a cluster from Norway lead the consortium?" in text
            assert STAFF.encode() not in answer.data and b"segreteria@" not in answer.data

            row = get_enquiry(h.app.db, ref)
            assert row["status"] == "answered" and row["answered_by"] == f"email:{STAFF}"
            later = utc_now() + timedelta(days=3)
            assert due_reminders(h.app.db, settings, later) == []

            # The applicant replies to the answer: the enquiry re-opens, the secretariat hears.
            await imap.deliver(
                _reply_to(
                    answer.message,
                    "Ada Rossi <ada@example.org>",
                    "Thank you! Must the partners be from different countries?",
                    "<ada-1@example.org>",
                )
            )
            follow_up = await until(
                lambda: next(
                    (r for r in smtp.handler.received if "wrote again" in r.message["Subject"]),
                    None,
                ),
                limit=60,
                what="the follow-up e-mail",
            )
            assert ref in follow_up.message["Subject"]
            assert follow_up.rcpt_tos == [settings.secretariat.email]
            assert "different countries" in follow_up.message.get_body(("plain",)).get_content()
            assert get_enquiry(h.app.db, ref)["status"] == "open"


async def test_a_follow_up_in_the_chat_re_opens_and_reaches_the_secretariat(
    tmp_path: Path, api: BotApiStandIn
) -> None:
    async with SmtpServer() as smtp:
        settings = make_settings(tmp_path, api, smtp_port=smtp.port)
        async with running_bot(settings, api) as h:
            user = 1001
            await h.say(user, "/start")
            ref = await fill_form(h, user, "Can a cluster from Norway lead the consortium?")
            await until(lambda: smtp.handler.received, what="the enquiry e-mail")
            before = len(api.bot_messages(user))
            answer_enquiry(
                h.app.db, ref, "Yes, it can.", actor="cli", now=utc_now(), settings=settings
            )
            h.app.kick()
            relayed = (await h.messages(user, before + 1))[before:]
            assert "Yes, it can." in relayed[-1].text
            asked = await h.press(relayed[-1], f"fu:{ref}")
            assert ref in asked[-1].text
            done = await h.say(user, "And may the partners come from the same region?")
            assert ref in done[-1].text
            follow_up = await until(
                lambda: next(
                    (r for r in smtp.handler.received if "wrote again" in r.message["Subject"]),
                    None,
                ),
                what="the follow-up e-mail",
            )
            body = follow_up.message.get_body(("plain",)).get_content()
            assert "same region" in body and "in the chat" in body
            assert get_enquiry(h.app.db, ref)["status"] == "open"
