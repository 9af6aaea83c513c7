"""The enquiry form's rough edges on Telegram: the real bot against the Bot API stand-in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_support import SmtpServer
from telegram_harness import make_settings, running_bot, until
from telegram_standin import BotApiStandIn

from bot.enquiries import get_enquiry


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[BotApiStandIn]:
    """A fresh stand-in; no request may be rejected on its merits."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    with BotApiStandIn() as standin:
        yield standin
        assert standin.rejected() == [], [(r.method, r.response) for r in standin.rejected()]


def _labels(message: object) -> dict[str, str]:
    markup = getattr(message, "reply_markup", None) or {}
    return {b["callback_data"]: b["text"] for row in markup.get("inline_keyboard", []) for b in row}


async def test_outside_the_list_asks_the_country_name_and_numbers_are_not_questions(
    tmp_path: Path, api: BotApiStandIn
) -> None:
    async with SmtpServer() as smtp:
        settings = make_settings(tmp_path, api, smtp_port=smtp.port)
        async with running_bot(settings, api) as h:
            user = 5101
            welcome = await h.say(user, "/start")
            assert "The call is closed: it closed on 2 February 2021" in welcome[0].text
            stale = await h.say(user, "14")
            assert stale[0].text.startswith("There is no option 14: choose from the list")
            await h.say(user, "/contact")
            await h.say(user, "Ada Rossi")
            await h.say(user, "ada@example.org")
            menu = (await h.say(user, "Cluster Nord"))[-1]
            labels = _labels(menu)
            assert labels["c:OTHER"] == "Outside the list"
            assert labels["c:more"] == "Another EU or COSME country"
            asked = await h.press(menu, "c:OTHER")
            assert "Please type its name" in asked[-1].text
            assert not _labels(asked[-1])
            question = await h.say(user, "Norway")
            assert "What is your question" in question[-1].text
            consent = (await h.say(user, "Can a Norwegian cluster lead a partnership?"))[-1]
            summary = (await h.press(consent, "consent:yes"))[-1]
            assert "Country: Norway" in summary.text
            sent = await h.press(summary, "send")
            match = re.search(r"ECCP-\d{4}", "\n".join(m.text for m in sent))
            assert match
            assert get_enquiry(h.app.db, match.group(0))["country"] == "Norway"
            await until(lambda: smtp.handler.received, what="the enquiry e-mail")
            body = smtp.handler.received[0].message.get_body(("plain",)).get_content()
            assert "Norway" in body
