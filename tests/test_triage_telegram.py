"""Erasure reaches the admin chat (issue 14): /forget and retention edit the enquiry's post
to its erased form, and later admin actions keep it erased. Through the Bot API stand-in."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from telegram_harness import ADMIN_CHAT, ADMIN_USER, make_settings, running_bot, until
from telegram_standin import BotApiStandIn, SentMessage
from test_telegram import admin_post, fill_form

from bot.enquiries import answer_enquiry, get_enquiry
from bot.jobs.retention import apply_retention
from bot.storage import utc_now

PERSONAL = ("Ada Rossi", "ada@example.org", "Cluster <Veneto> & Co.", "Norway")


def _current(api: BotApiStandIn, post: SentMessage) -> str:
    return next(m.text for m in api.bot_messages(ADMIN_CHAT) if m.message_id == post.message_id)


async def test_forget_edits_the_admin_post_and_admin_actions_keep_it_erased(
    tmp_path: Path, api: BotApiStandIn
) -> None:
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        user = 3001
        ref = await fill_form(h, user, "Can a cluster from Norway lead the consortium?")
        post = await admin_post(h, ref)
        assert all(word in post.text for word in PERSONAL)
        await until(lambda: get_enquiry(h.app.db, ref)["admin_message_id"] == post.message_id)

        asked = await h.say(user, "/forget")
        await h.press(asked[-1], "forget:yes")
        await until(lambda: "(personal data erased)" in _current(api, post), what="the erased post")
        text = _current(api, post)
        assert ref in text
        assert not any(word in text for word in PERSONAL), text
        edits = [
            c
            for c in api.calls("editMessageText")
            if int(c.params["message_id"]) == post.message_id
        ]
        assert edits

        # A reply to the erased post is refused in plain words; the post stays erased.
        before = len(api.bot_messages(ADMIN_CHAT))
        api.push_message(ADMIN_CHAT, "Yes, Norway can.", user_id=ADMIN_USER, reply_to=post)
        refusal = (await h.messages(ADMIN_CHAT, before + 1))[before:]
        assert "its data was erased at the applicant's request" in refusal[0].text
        closing = await h.say(ADMIN_CHAT, f"/close {ref}", user_id=ADMIN_USER)
        assert ref in closing[0].text
        assert not any(word in _current(api, post) for word in PERSONAL)
        await until(
            lambda: (
                h.app.db.execute(
                    "SELECT count(*) FROM deliveries WHERE transport = 'telegram' "
                    "AND status IN ('queued', 'sending', 'failed-temporary')"
                ).fetchone()[0]
                == 0
            ),
            what="chat messages delivered",
        )


async def test_retention_edits_the_admin_post(tmp_path: Path, api: BotApiStandIn) -> None:
    settings = make_settings(tmp_path, api, privacy={"retention": "30d"})
    async with running_bot(settings, api) as h:
        ref = await fill_form(h, 3002, "Can a cluster from Norway lead the consortium?")
        post = await admin_post(h, ref)
        await until(lambda: get_enquiry(h.app.db, ref)["admin_message_id"] == post.message_id)
        month_ago = utc_now() - timedelta(days=31)
        answer_enquiry(h.app.db, ref, "Yes.", actor=f"admin:{ADMIN_USER}", now=month_ago)
        assert apply_retention(h.app.db, settings, utc_now()) == 1
        h.app.kick()
        await until(lambda: "(personal data erased)" in _current(api, post), what="the erased post")
        assert not any(word in _current(api, post) for word in PERSONAL)
