"""The Telegram channel end to end: the real bot (PTB 22) against the Bot API stand-in."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from smtp_support import SmtpServer
from telegram_harness import (
    ADMIN_CHAT,
    ADMIN_USER,
    STRANGER,
    Harness,
    make_settings,
    running_bot,
    until,
)
from telegram_standin import BotApiStandIn, SentMessage, parse_html

from bot.channels.telegram_render import (
    MAX_MESSAGE,
    callback_data,
    clean,
    split_text,
    to_html_chunks,
    utf16_len,
)
from bot.cli import main
from bot.enquiries import get_enquiry
from bot.jobs.reminders import due_reminders, send_reminders
from bot.storage import utc_now

NASTY = [
    "<b>not bold</b> & <script>alert(1)</script> &amp; &#0; &unknown; </i>",
    "*bold* _it_ [link](http://x) `code` ~strike~ ||spoiler|| > quote # + - = | { } . !",
    "ctrl\x00\x01\x07\x1b[31m\x7f\u200b\u202e\ufeff\r\nline2\rline3\ttab",
    "emoji 🇮🇹👩‍👩‍👧 and surrogates-free astral 𝕏",
    "x" * 5000,
    ("lorem ipsum " * 300 + "\n") * 2,
]


async def fill_form(h: Harness, chat: int, question: str, *, name: str = "Ada Rossi") -> str:
    """Go through /contact with buttons; returns the reference."""
    await h.say(chat, "/contact")
    await h.say(chat, name)
    await h.say(chat, "ada@example.org")
    await h.say(chat, "Cluster <Veneto> & Co.")
    new = await h.say(chat, "Italy")
    if "question" not in new[-1].text.lower():
        new = await h.press(new[-1], "c:IT")
    new = await h.say(chat, question)
    consent = new[-1]
    assert consent.reply_markup is not None
    new = await h.press(consent, "consent:yes")
    summary = new[-1]
    assert any(
        b["callback_data"] == "send" for row in summary.reply_markup["inline_keyboard"] for b in row
    )
    new = await h.press(summary, "send")
    match = re.search(r"[A-Z]+-\d{4}", "\n".join(m.text for m in new))
    assert match, [m.text for m in new]
    return match.group(0)


async def admin_post(h: Harness, ref: str) -> SentMessage:
    """The bot's post of `ref` in the admin chat."""
    return await until(
        lambda: next((m for m in h.api.bot_messages(ADMIN_CHAT) if ref in m.text), None),
        what=f"admin post of {ref}",
    )


async def test_start_faq_enquiry_mail_admin_relay_answered(tmp_path: Path, api: BotApiStandIn):
    """The whole journey: start, FAQ, enquiry, mail, admin post, relayed reply, answered."""
    async with SmtpServer() as smtp:
        settings = make_settings(tmp_path, api, smtp_port=smtp.port)
        async with running_bot(settings, api) as h:
            user = 1001
            welcome = await h.say(user, "/start")
            assert "COS-CLUSTER-2020-3-03" in welcome[0].text
            assert welcome[0].reply_markup["inline_keyboard"]

            faq = await h.say(user, "What is the total budget of the call?")
            assert "6,000,000" in faq[0].text or "6.000.000" in faq[0].text

            topic = await h.press(welcome[0], "faq:deadline")
            assert topic and topic[0].text

            ref = await fill_form(h, user, "Can a cluster from Norway lead the consortium?")

            # The secretariat's mail, through a real SMTP server.
            await until(lambda: smtp.handler.received, what="the enquiry e-mail")
            mail = smtp.handler.received[0].message
            assert ref in mail["Subject"]
            assert "Norway" in mail.get_body(("plain",)).get_content()

            # The admin post, with its buttons; its message id is stored.
            post = await admin_post(h, ref)
            assert "Ada Rossi" in post.text and "Cluster <Veneto> & Co." in post.text
            data = [b["callback_data"] for row in post.reply_markup["inline_keyboard"] for b in row]
            assert all(len(d.encode()) <= 64 for d in data)
            await until(lambda: get_enquiry(h.app.db, ref)["admin_message_id"] == post.message_id)

            # Before the answer a reminder would be due three days later.
            later = utc_now() + timedelta(days=3)
            assert [r["ref"] for r in due_reminders(h.app.db, settings, later)] == [ref]

            # An admin replies to the post: the applicant receives it with the reference.
            before = len(api.bot_messages(user))
            api.push_message(
                ADMIN_CHAT,
                "Yes: Norway takes part in COSME. <Regards> & thanks",
                user_id=ADMIN_USER,
                reply_to=post,
            )
            relayed = (await h.messages(user, before + 1))[before:]
            assert relayed[0].text.startswith(ref)
            assert "Norway takes part in COSME. <Regards> & thanks" in relayed[0].text

            row = get_enquiry(h.app.db, ref)
            assert row["status"] == "answered"
            assert row["answered_by"] == f"admin:{ADMIN_USER}"
            audit = h.app.db.execute(
                "SELECT actor FROM audit WHERE ref = ? AND event = 'answered'", [ref]
            ).fetchall()
            assert audit == [(f"admin:{ADMIN_USER}",)]
            # Reminders stop once answered.
            assert due_reminders(h.app.db, settings, later) == []
            assert send_reminders(h.app.db, settings, later) == []
            # The post shows the new state; the notification rows are all sent.
            await until(
                lambda: (
                    "✅" in api.bot_messages(ADMIN_CHAT)[0].text
                    or any(
                        "✅" in m.text
                        for m in api.bot_messages(ADMIN_CHAT)
                        if m.message_id == post.message_id
                    )
                )
            )
            await until(
                lambda: (
                    h.app.db.execute(
                        "SELECT count(*) FROM deliveries WHERE transport = 'telegram' "
                        "AND status != 'sent'"
                    ).fetchone()[0]
                    == 0
                ),
                what="chat messages sent",
            )
    # Every button press got its answerCallbackQuery.
    answered = {r.params["callback_query_id"] for r in api.calls("answerCallbackQuery")}
    assert answered == set(api._callbacks)


async def test_admin_commands(tmp_path: Path, api: BotApiStandIn):
    """/open, /reply REF text, /close REF, /stats and the close button, for admins."""
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        ref1 = await fill_form(h, 2001, "First question about eligibility of SMEs?")
        ref2 = await fill_form(h, 2002, "Second question about lump sums?")
        await admin_post(h, ref2)

        listing = await h.say(ADMIN_CHAT, "/open", user_id=ADMIN_USER)
        text = listing[0].text
        assert text.index(ref1) < text.index(ref2)

        # "Answered" on the post: answered elsewhere; the applicant is told, the post updated.
        post1 = await admin_post(h, ref1)
        before = len(api.bot_messages(2001))
        await h.press(post1, f"adm|answered|{ref1}", user_id=ADMIN_USER)
        notice = (await h.messages(2001, before + 1))[before:]
        assert notice[0].text.startswith(ref1) and "e-mail" in notice[0].text
        assert get_enquiry(h.app.db, ref1)["status"] == "answered"
        await until(
            lambda: (
                "✅"
                in next(
                    m.text for m in api.bot_messages(ADMIN_CHAT) if m.message_id == post1.message_id
                )
            )
        )

        before = len(api.bot_messages(2001))
        await h.say(ADMIN_CHAT, f"/reply {ref1} Line one\nline <two> & more", user_id=ADMIN_USER)
        relayed = (await h.messages(2001, before + 1))[before:]
        assert relayed[0].text.startswith(ref1) and "line <two> & more" in relayed[0].text
        assert get_enquiry(h.app.db, ref1)["status"] == "answered"

        post = await admin_post(h, ref2)
        await h.press(post, f"adm|close|{ref2}", user_id=ADMIN_USER)
        await until(lambda: get_enquiry(h.app.db, ref2)["status"] == "closed")

        closed = await h.say(ADMIN_CHAT, f"/close {ref2}", user_id=ADMIN_USER)
        assert "closed" in closed[0].text.lower()

        stats = await h.say(2001, "/stats", user_id=ADMIN_USER)
        assert "2" in stats[0].text and "answered 1" in stats[0].text

        unknown = await h.say(ADMIN_CHAT, "/reply ECCP-9999 hello", user_id=ADMIN_USER)
        assert "ECCP-9999" in unknown[0].text


async def test_strangers_are_refused_neutrally(tmp_path: Path, api: BotApiStandIn):
    """Non-admins get the same neutral refusal everywhere and change nothing."""
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        ref = await fill_form(h, 3001, "Is a university eligible as a partner?")
        post = await admin_post(h, ref)
        refusals = []
        for chat in (STRANGER, ADMIN_CHAT):
            for command in ("/open", "/stats", f"/reply {ref} hacked", f"/close {ref}", "/reply"):
                refusals += await h.say(chat, command, user_id=STRANGER)
        texts = {m.text for m in refusals}
        assert texts == {"This command is not available."}
        # A reply to a post is no command: it says so, in the secretariat's language, and
        # nothing reaches the applicant.
        before = len(api.bot_messages(3001))
        (refused,) = await h.say(ADMIN_CHAT, "I answer instead", user_id=STRANGER, reply_to=post)
        texts_dir = Path(__file__).parent.parent / "templates" / "telegram"
        texts_file = texts_dir / f"{settings.language}.yaml"
        expected = yaml.safe_load(texts_file.read_text(encoding="utf-8"))["reply_not_allowed"]
        assert refused.text == expected
        assert "command" not in refused.text.lower()
        _, query = api.press(post, f"adm|close|{ref}", user_id=STRANGER)
        await until(
            lambda: any(
                r.params.get("callback_query_id") == query for r in api.calls("answerCallbackQuery")
            )
        )
        await asyncio.sleep(0.2)
        row = get_enquiry(h.app.db, ref)
        assert row["status"] == "open"
        assert "I answer instead" not in [m.text for m in api.bot_messages(3001)[before:]]
        assert (
            h.app.db.execute("SELECT count(*) FROM audit WHERE actor LIKE 'admin:%'").fetchone()[0]
            == 0
        )


async def test_nasty_text_everywhere_is_accepted_by_telegram(tmp_path: Path, api: BotApiStandIn):
    """<, &, MarkdownV2 specials, 5 000 characters, control characters: no rejected request."""
    # Escaping is under test, not pacing: no per-chat limit between the split pieces.
    settings = make_settings(tmp_path, api, telegram={"max_messages_per_chat_per_second": 0})
    async with running_bot(settings, api) as h:
        chat = 4001
        for text in NASTY:
            await h.say(chat, text)
        await h.say(chat, "/start " + NASTY[0])
        await h.say(chat, "/" + "x" * 40)
        # The form with nasty values; long ones are refused politely by the engine.
        await h.say(4003, "/contact")
        for text in NASTY:
            await h.say(4003, text)
        await h.say(4003, "/cancel")
        ref = await fill_form(h, 4002, NASTY[0] + " " + NASTY[1], name='<Ada & "Bob">')
        post = await admin_post(h, ref)
        assert '<Ada & "Bob">' in post.text
        for text in NASTY:
            api.push_message(ADMIN_CHAT, text, user_id=ADMIN_USER, reply_to=post)
        await h.say(ADMIN_CHAT, f"/reply {ref} {NASTY[2]}", user_id=ADMIN_USER)
        await until(
            lambda: (
                h.app.db.execute(
                    "SELECT count(*) FROM deliveries WHERE transport = 'telegram' "
                    "AND status IN ('queued', 'sending', 'failed-temporary')"
                ).fetchone()[0]
                == 0
            )
        )
        # Long answers were split below the limit, nothing was dropped.
        for target in (chat, 4002, 4003, ADMIN_CHAT):
            assert all(utf16_len(m.text) <= 4096 for m in api.bot_messages(target))
        relayed = api.bot_messages(4002)
        assert sum(m.text.count("x") for m in relayed) >= 5000


async def test_429_and_502_are_retried_and_delivered(tmp_path: Path, api: BotApiStandIn):
    """Injected flood limits and gateway errors delay messages but never lose them."""
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        api.fail_next("sendMessage", 2, status=429, retry_after=1)
        new = await h.say(5001, "/help")
        assert new and "/faq" in new[0].text
        api.fail_next("sendMessage", 3, status=502)
        new = await h.say(5001, "What is the deadline?")
        assert new
        api.fail_next("getUpdates", 2, status=502)
        api.fail_next("answerCallbackQuery", 1, status=500)
        new = await h.press(new[-1], new[-1].reply_markup["inline_keyboard"][0][0]["callback_data"])
        assert new
    statuses = [r.status for r in api.calls("sendMessage")]
    assert statuses.count(429) == 2 and statuses.count(502) == 3


async def test_telegram_down_longer_than_retries_loses_nothing(
    tmp_path: Path, api: BotApiStandIn, monkeypatch
):
    """When every retry fails the reply stays stored and the worker delivers it later."""
    import bot.channels.telegram_limits as limits
    import bot.deliveries.backoff as backoff

    monkeypatch.setattr(limits, "BACKOFF_FIRST", 0.01)
    # The queue's one backoff policy, shortened: the worker wakes at the retry's due time.
    monkeypatch.setattr(backoff, "RETRY_BASE", timedelta(seconds=0.1))
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        api.fail_next("sendMessage", limits.MAX_NETWORK_RETRIES + 3, status=502)
        update_id = api.push_message(5101, "/help")
        await h.handled(update_id, limit=30)
        assert "/faq" in api.bot_messages(5101)[0].text
        rows = h.app.db.execute(
            "SELECT status, attempts FROM deliveries WHERE kind = 'reply'"
        ).fetchall()
        assert rows == [("sent", 2)]


async def test_failed_mail_is_reported_in_the_admin_chat(tmp_path: Path, api: BotApiStandIn):
    """A mail_failed report is posted to the admin chat and marked sent."""
    from bot.deliveries.model import NewDelivery
    from bot.deliveries.store import enqueue

    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        with h.app.db.conn:
            enqueue(
                h.app.db,
                NewDelivery(
                    transport="telegram",
                    kind="mail_failed",
                    recipient=str(ADMIN_CHAT),
                    payload="ECCP-0007: 550 <mailbox> unavailable & refused",
                    idempotency_key="test:mail_failed:1",
                ),
                utc_now(),
            )
        h.app.kick()
        posted = await h.messages(ADMIN_CHAT, 1)
        assert "550 <mailbox> unavailable & refused" in posted[0].text
        assert "failed" in posted[0].text.lower()


async def test_one_users_flood_does_not_delay_others(tmp_path: Path, api: BotApiStandIn):
    """A flood from one chat is answered in order and does not hold up another chat."""
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        for i in range(12):
            api.push_message(6001, "/help" if i % 2 else "/privacy")
        api.push_message(6002, "/help")
        await h.messages(6002, 1)
        assert len(api.bot_messages(6001)) < 12
        replies = await h.messages(6001, 12, limit=30)
        # In order: privacy, help, privacy, help...
        kinds = ["/faq" in m.text for m in replies]
        assert kinds == [bool(i % 2) for i in range(12)]


async def test_typing_before_slow_replies(tmp_path: Path, api: BotApiStandIn, monkeypatch):
    """A reply that took long to produce is preceded by the "typing" action."""
    import bot.channels.telegram_handling as channel

    monkeypatch.setattr(channel, "SLOW_REPLY", timedelta(0))
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        await h.say(6101, "When is the deadline?")
    methods = [r.method for r in api.requests if r.method in ("sendChatAction", "sendMessage")]
    assert methods[:2] == ["sendChatAction", "sendMessage"]
    assert api.calls("sendChatAction")[0].params["action"] == "typing"


async def test_groups_are_declined_and_commands_menus_set(tmp_path: Path, api: BotApiStandIn):
    """A group other than the admin chat gets a polite decline; menus in it, en, default."""
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        new = await h.say(-100777, "/start", user_id=7001, language_code="it")
        assert "chat private" in new[0].text
        new = await h.say(-100777, "hello bot", user_id=7001)
        assert "private" in new[0].text
        # The menus are set in the background once the bot runs.
        admin_scope = json.dumps({"chat_id": ADMIN_CHAT, "type": "chat"}, sort_keys=True)
        await until(
            lambda: (
                {lang for (_s, lang) in api.commands} >= {"it", "en", ""}
                and (admin_scope, "") in api.commands
            ),
            what="command menus",
        )
    languages = {lang for (_scope, lang) in api.commands}
    assert languages >= {"it", "en", ""}
    scopes = [json.loads(scope) for scope, _ in api.commands]
    assert {"type": "chat", "chat_id": ADMIN_CHAT} in scopes
    admin_menu = api.commands[
        (json.dumps({"chat_id": ADMIN_CHAT, "type": "chat"}, sort_keys=True), "")
    ]
    assert {c["command"] for c in admin_menu} == {"open", "reply", "close", "stats"}


async def test_deep_links_and_old_buttons(tmp_path: Path, api: BotApiStandIn):
    """/start <faq-id> answers the topic, /start contact opens the form; stale buttons OK."""
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        new = await h.say(8001, "/start budget")
        assert "6,000,000" in new[0].text or "6.000.000" in new[0].text
        new = await h.say(8001, "/start contact")
        assert "name" in new[-1].text.lower()
        await h.say(8001, "/cancel")
        # A button whose data the engine no longer knows.
        stale = SentMessage(8001, 1, "old", None, None, True, 0.0)
        stale.payload = api._message_payload(stale)
        update_id, query = api.push_callback(stale, "something-from-an-old-version")
        await h.handled(update_id)
        assert any(
            r.params.get("callback_query_id") == query for r in api.calls("answerCallbackQuery")
        )


async def test_webhook_mode_checks_secret_and_serves_healthz(tmp_path: Path, api: BotApiStandIn):
    """With webhook_url set: setWebhook with a secret, updates arrive, /healthz answers."""
    from smtp_support import free_port

    port = free_port()
    settings = make_settings(
        tmp_path,
        api,
        telegram={
            "webhook_url": f"http://127.0.0.1:{port}/tg/hook",
            "webhook_port": port,
            "webhook_secret": "s3cret_token-1",
        },
    )
    async with running_bot(settings, api) as h:
        assert api.webhook["secret_token"] == "s3cret_token-1"
        new = await h.say(9001, "/start")
        assert "COS-CLUSTER-2020-3-03" in new[0].text

        def get(url: str, data: bytes | None = None, secret: str | None = None) -> int:
            request = urllib.request.Request(url, data=data)
            if secret:
                request.add_header("X-Telegram-Bot-Api-Secret-Token", secret)
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        base = f"http://127.0.0.1:{port}"
        forged = json.dumps({"update_id": 1, "message": {}}).encode()
        assert await asyncio.to_thread(get, f"{base}/tg/hook", forged, "wrong") == 403
        assert await asyncio.to_thread(get, f"{base}/tg/hook", forged) == 403
        assert await asyncio.to_thread(get, f"{base}/healthz") == 200
        assert (
            h.app.db.execute("SELECT count(*) FROM updates WHERE update_id = 1").fetchone()[0] == 0
        )

        # A genuine delivery is journaled before the 200, and handled after it: the chat's
        # queue is busy sending the reply to an earlier update, which Telegram holds up.
        def genuine(update_id: int) -> bytes:
            message = {
                "message_id": update_id,
                "date": 0,
                "chat": api.chat(9002),
                "from": api.user(9002),
                "text": "/help",
            }
            return json.dumps({"update_id": update_id, "message": message}).encode()

        with api.hold("sendMessage"):
            first = await asyncio.to_thread(get, f"{base}/tg/hook", genuine(776), "s3cret_token-1")
            assert first == 200
            await asyncio.to_thread(api.wait_held, "sendMessage")
            status = await asyncio.to_thread(get, f"{base}/tg/hook", genuine(777), "s3cret_token-1")
            assert status == 200
            row = h.app.db.execute("SELECT handled_at FROM updates WHERE update_id = 777")
            assert row.fetchone() == (None,)
        await h.handled(777)
        assert "/faq" in (await h.messages(9002, 2))[1].text


def test_run_without_token_points_to_botfather(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """No token: exit 1 with one line that says how to get one."""
    config = tmp_path / "c.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "@BotFather" in err and "TELEGRAM_BOT_TOKEN" in err


def test_rendering_escapes_and_splits():
    """Pure formatting: escaped HTML the stand-in parses, pieces under the limit."""
    for text in NASTY:
        chunks = to_html_chunks(text, title="<T&C>")
        assert chunks[0].startswith("<b>&lt;T&amp;C&gt;</b>")
        for chunk in chunks:
            plain = parse_html(chunk)
            assert 0 < utf16_len(plain) <= 4096
        joined = "".join(parse_html(c) for c in chunks)
        assert joined.replace("\n", "").replace(" ", "").count("x") == clean(text).count("x")
    lines = split_text("a\n" * 5000, MAX_MESSAGE)
    assert all(utf16_len(p) <= MAX_MESSAGE for p in lines)
    astral = split_text("𝕏" * 5000, MAX_MESSAGE)
    assert all(utf16_len(p) <= MAX_MESSAGE for p in astral)
    assert "".join(astral) == "𝕏" * 5000
    assert len(callback_data("é" * 64).encode()) <= 64


def test_database_files_readable_from_outside(tmp_path: Path):
    """The journal is plain SQLite (the crash test reads it from another process)."""
    from bot.storage import open_database

    db = open_database(tmp_path / "x.sqlite3")
    db.close()
    with sqlite3.connect(tmp_path / "x.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM updates").fetchone() == (0,)


def test_run_with_a_refused_token_exits_1(
    tmp_path: Path, api: BotApiStandIn, capsys: pytest.CaptureFixture[str]
):
    """A token Telegram refuses (401): one line, exit 1, no traceback."""
    config = tmp_path / "c.toml"
    refused = "999:" + "refused" * 5
    config.write_text(
        f'data_dir = "{tmp_path}"\n[telegram]\ntoken = "{refused}"\nbase_url = "{api.base_url}"\n'
        '[smtp]\nhost = "embedded"\n'
    )
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "refused the bot token" in err and "@BotFather" in err and "Traceback" not in err
    assert refused not in err


# -- review fixes ---------------------------------------------------------------------------


def answered_ids(api: BotApiStandIn) -> list[str]:
    """callback_query_id of every answerCallbackQuery Telegram accepted."""
    return [r.params["callback_query_id"] for r in api.calls("answerCallbackQuery") if r.ok]


def unanswered_press(api: BotApiStandIn, message: SentMessage, data: str) -> dict[str, object]:
    """A callback_query the stand-in knows (answerable once) but never queued as an update."""
    with api._cond:
        query_id = str(9_500_000 + api._next_callback)
        api._next_callback += 1
        api._callbacks[query_id] = False
    return {
        "id": query_id,
        "from": api.user(message.chat_id),
        "message": message.payload,
        "chat_instance": str(message.chat_id),
        "data": data,
    }


def test_rendering_keeps_quotes_and_apostrophes():
    """Only &, < and > are escaped in text: an Italian apostrophe stays an apostrophe."""
    chunks = to_html_chunks("L'iscrizione \"entro\" l'ora <x> & co", title="Com'è")
    assert chunks == ["<b>Com'è</b>\nL'iscrizione \"entro\" l'ora &lt;x&gt; &amp; co"]
    assert "&#x27;" not in chunks[0] and "&quot;" not in chunks[0]
    assert parse_html(chunks[0]) == "Com'è\nL'iscrizione \"entro\" l'ora <x> & co"


async def test_italian_replies_carry_plain_apostrophes(tmp_path: Path, api: BotApiStandIn):
    """End to end: no numeric entity for quotes in what the bot sends."""
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        await h.say(6201, "/start", language_code="it")
        await h.say(6201, "/help", language_code="it")
    sent = [r.params["text"] for r in api.calls("sendMessage")]
    assert sent and not any("&#x27;" in t or "&#39;" in t or "&quot;" in t for t in sent)
    assert any("'" in t for t in sent)


async def test_engine_failure_apologises_and_answers_the_press(
    tmp_path: Path, api: BotApiStandIn, monkeypatch: pytest.MonkeyPatch
):
    """A handler exception: rolled back, handled once, an apology and the callback answer."""
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        welcome = await h.say(6301, "/start", language_code="it")
        engine = h.channel.engine
        real = engine.handle

        def broken(event):
            if event.kind == "button" or event.text == "boom":
                h.app.db.execute("INSERT INTO faq_log (faq_id) VALUES ('half-done')")
                raise RuntimeError("engine bug")
            return real(event)

        monkeypatch.setattr(engine, "handle", broken)
        before = h.app.db.execute("SELECT count(*) FROM faq_log").fetchone()[0]
        new = await h.say(6301, "boom", language_code="it")
        assert len(new) == 1 and "Ci scusiamo" in new[0].text
        update_id, query_id = api.press(welcome[0], "faq:deadline", language_code="en")
        await h.handled(update_id)
        await until(lambda: query_id in answered_ids(api), what="callback answer")
        assert "Sorry" in (await h.messages(6301, 3))[-1].text
        # The half-done write was rolled back with the failed handler's savepoint.
        assert h.app.db.execute("SELECT count(*) FROM faq_log").fetchone()[0] == before
        monkeypatch.setattr(engine, "handle", real)
        assert await h.say(6301, "/help")


async def test_replayed_and_redelivered_presses_are_answered(tmp_path: Path, api: BotApiStandIn):
    """A press replayed long after it arrived, and a handled one delivered again: answered."""
    from bot.storage import utc_now as now

    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        welcome = (await h.say(6401, "/start"))[0]
        # Sent marks commit lazily: settle them before writing to the database directly.
        h.channel.group.flush()
        # Journaled a minute ago by a previous run, never handled.
        old = unanswered_press(api, welcome, "faq:deadline")
        h.channel.journal.record(
            [(50_001, json.dumps({"update_id": 50_001, "callback_query": old}))],
            now() - timedelta(minutes=1),
        )
        assert h.channel.replay() == 1
        await h.handled(50_001)
        await until(lambda: old["id"] in answered_ids(api), what="replayed press answered")
        # Handled already (its answer lost in a crash), and delivered again.
        again = unanswered_press(api, welcome, "faq:deadline")
        payload = {"update_id": 50_002, "callback_query": again}
        h.channel.journal.record([(50_002, json.dumps(payload))], now())
        h.channel.journal.mark_handled(50_002, now())
        h.channel.group.flush()
        h.app.db.conn.commit()
        h.channel.accept([payload])
        await until(lambda: again["id"] in answered_ids(api), what="re-delivery answered")
    assert answered_ids(api).count(old["id"]) == 1


async def test_start_not_held_up_by_command_menu_failures(tmp_path: Path, api: BotApiStandIn):
    """setMyCommands failing with 5xx: the bot answers at once; the menus are retried aside."""
    from bot.channels.telegram_limits import MAX_NETWORK_RETRIES

    api.fail_next("setMyCommands", 100, status=502)
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        await h.say(6501, "/help")
        # Answered while the first menu call was still being retried (the old behaviour sat
        # out every retry before polling started).
        assert len(api.calls("setMyCommands")) <= MAX_NETWORK_RETRIES


async def test_cosmetic_failures_do_not_delay_replies_or_other_chats(
    tmp_path: Path, api: BotApiStandIn, monkeypatch: pytest.MonkeyPatch
):
    """answerCallbackQuery/typing: one retry at most; a 429 on them pauses no chat."""
    import bot.channels.telegram_handling as channel

    monkeypatch.setattr(channel, "SLOW_REPLY", timedelta(0))
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        welcome = (await h.say(6601, "/start"))[0]

        # 5xx on both: one retry each, and the reply follows within about a second.
        api.fail_next("answerCallbackQuery", 10, status=502)
        api.fail_next("sendChatAction", 10, status=502)
        answers, typings = len(api.calls("answerCallbackQuery")), len(api.calls("sendChatAction"))
        new = await h.press(welcome, "faq:deadline")
        # One retry each, then the reply (six retries with backoff took about 30 s).
        assert new
        assert len(api.calls("answerCallbackQuery")) - answers <= 2
        assert len(api.calls("sendChatAction")) - typings <= 2

        # A long 429 on answerCallbackQuery (no chat_id): nobody else waits for it.
        api._faults.clear()
        api.fail_next("answerCallbackQuery", 1, status=429, retry_after=60)
        answers = len(api.calls("answerCallbackQuery"))
        await h.press(welcome, "faq:budget")
        # Answered (a global pause would hold this reply for the whole minute, far past
        # the harness's wait) while the button's answer was given up, not retried.
        assert await h.say(6602, "/help")
        assert len(api.calls("answerCallbackQuery")) == answers + 1


async def test_sigterm_during_a_flood_wait_stops_quickly(tmp_path: Path, api: BotApiStandIn):
    """Stopping while a reply waits out a 429 takes seconds, not the whole wait."""
    settings = make_settings(tmp_path, api)
    # running_bot gives the stop 30 s, far below the 90 s wait: it must not sit it out.
    async with running_bot(settings, api):
        api.fail_next("sendMessage", 1, status=429, retry_after=90)
        api.push_message(6701, "/help")
        await until(lambda: api.calls("sendMessage"), what="the 429")


async def test_multi_message_rows_resume_after_the_last_accepted_piece(
    tmp_path: Path, api: BotApiStandIn
):
    """Progress is recorded per message: a row resumed after a crash sends only the rest."""
    from bot.channels.telegram_journal import OutMessage
    from bot.deliveries import store
    from bot.storage import utc_now as now

    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        journal = h.channel.journal
        owner = journal.owner
        assert owner is not None
        pieces = [OutMessage(6801, f"piece {i}") for i in range(1, 5)]
        # A reply whose sender died after two pieces: its claim runs out, the worker resumes.
        with h.app.db.conn:
            journal.owner = "elsewhere:1:gone"
            row = journal.add_replies(6801, pieces, now() - timedelta(minutes=5))
            assert row is not None
            row_id = row.id
            store.record_progress(h.app.db, row_id, "elsewhere:1:gone", 2)
            journal.owner = owner
        await h.app.deliver()
        await until(lambda: h.idle(), what="row sent")
        assert [m.text for m in api.bot_messages(6801)] == ["piece 3", "piece 4"]
        assert store.get(h.app.db, row_id).status == "sent"

        # A handler's reply of several messages: each piece is committed as it goes.
        progress: list[tuple[int, bool]] = []
        original = store.record_progress

        def spy(db: object, delivery_id: int, claim: str, count: int) -> bool:
            # Recorded inside the transaction; the earlier pieces are on disk already.
            progress.append((count, h.app.db.conn.in_transaction))
            return original(db, delivery_id, claim, count)  # type: ignore[arg-type]

        store.record_progress = spy  # type: ignore[assignment]
        try:
            pieces = [OutMessage(6802, f"part {i}") for i in range(1, 4)]
            with h.app.db.conn:
                row = journal.add_replies(6802, pieces, now())
            assert row is not None
            row_id = row.id
            await h.channel.notifications.deliver_reply(row, pieces)
        finally:
            store.record_progress = original  # type: ignore[assignment]
        assert [count for count, _ in progress] == [1, 2]
        await until(lambda: store.get(h.app.db, row_id).status == "sent", what="row recorded")
        assert [m.text for m in api.bot_messages(6802)] == ["part 1", "part 2", "part 3"]


def test_setwebhook_refused_exits_1_with_one_line(
    tmp_path: Path, api: BotApiStandIn, capsys: pytest.CaptureFixture[str]
):
    """setWebhook failing: one clear line and exit 1, no traceback, no hang."""
    from smtp_support import free_port

    port = free_port()
    api.fail_next(
        "setWebhook",
        10,
        status=400,
        description="Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
    )
    config = tmp_path / "c.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\n[telegram]\ntoken = "{api.token}"\n'
        f'base_url = "{api.base_url}"\nwebhook_url = "http://127.0.0.1:{port}/hook"\n'
        f'webhook_port = {port}\n[smtp]\nhost = "embedded"\n'
    )
    assert main(["run", "--config", str(config)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and "webhook" in err[0] and "https" in err[0].lower(), err


class FailingCommit:
    """The database, except that the next COMMIT fails."""

    def __init__(self, db: object) -> None:
        self._db = db
        self.fail = 1

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)

    def execute(self, sql: str, *args: object) -> object:
        if sql == "COMMIT" and self.fail:
            self.fail -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return self._db.execute(sql, *args)


async def test_journal_commit_failure_is_not_confirmed(tmp_path: Path, api: BotApiStandIn):
    """accept() raises when the journal COMMIT fails; polling fetches the update again."""
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        await h.say(6901, "/help")
        group = h.channel.group
        # Sent marks commit lazily: settle them before the COMMIT starts failing.
        group.flush()
        real = group.db
        group.db = FailingCommit(real)
        payload = {
            "update_id": 60_001,
            "message": {
                "message_id": 5,
                "date": 0,
                "chat": api.chat(6902),
                "from": api.user(6902),
                "text": "/help",
            },
        }
        with pytest.raises(RuntimeError):
            h.channel.accept([payload])
        journaled = real.execute("SELECT count(*) FROM updates WHERE update_id = 60001")
        assert journaled.fetchone()[0] == 0

        # Polling: not journaled, so not confirmed; fetched again and handled.
        group.db = FailingCommit(real)
        update_id = api.push_message(6903, "/help")
        await h.handled(update_id, limit=20)
        assert await h.messages(6903, 1)
        assert group.db.fail == 0


async def test_a_paused_chat_does_not_delay_other_notifications(tmp_path: Path, api: BotApiStandIn):
    """The worker sends per chat concurrently: a 429 in one chat stalls only it."""
    from bot.channels.telegram_journal import OutMessage
    from bot.storage import utc_now as now

    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        journal = h.channel.journal
        owner = journal.owner
        # Queued by a sender that died: the worker takes both over.
        journal.owner = "elsewhere:1:gone"
        with h.app.db.conn:
            journal.add_replies(7101, [OutMessage(7101, "first chat")], now() - timedelta(hours=1))
            journal.add_replies(7102, [OutMessage(7102, "second chat")], now() - timedelta(hours=1))
        journal.owner = owner
        api.fail_next("sendMessage", 1, status=429, retry_after=4)
        task = asyncio.create_task(h.app.deliver())
        await h.messages(7102, 1, limit=30)
        # Order, not timing: the second chat got its message while the first still waits.
        assert api.bot_messages(7101) == []
        await task
        assert await h.messages(7101, 1, limit=30)


async def test_a_press_waiting_in_its_queue_is_answered_in_time(
    tmp_path: Path, api: BotApiStandIn, monkeypatch: pytest.MonkeyPatch
):
    """A press stuck behind a slow queue is answered before Telegram's window closes."""
    import bot.channels.telegram_updates as updates

    monkeypatch.setattr(updates, "EARLY_ANSWER_AFTER", 0.3)
    settings = make_settings(tmp_path, api)
    async with running_bot(settings, api) as h:
        welcome = (await h.say(7201, "/start"))[0]
        with api.hold("sendMessage"):
            # The chat's queue is busy: Telegram holds up the reply to a message.
            api.push_message(7201, "When is the deadline?")
            await asyncio.to_thread(api.wait_held, "sendMessage")
            update_id, query_id = api.press(welcome, "faq:deadline")
            await until(lambda: query_id in answered_ids(api), what="early answer")
            row = h.app.db.execute(
                "SELECT handled_at FROM updates WHERE update_id = ?", [update_id]
            )
            assert row.fetchone() in (None, (None,))
        await h.handled(update_id)
    assert answered_ids(api).count(query_id) == 1


async def test_webhook_answers_500_when_the_journal_commit_fails(
    tmp_path: Path, api: BotApiStandIn
):
    """Not journaled, not acknowledged: Telegram gets a 500 and sends the update again."""
    from smtp_support import free_port

    port = free_port()
    settings = make_settings(
        tmp_path,
        api,
        telegram={
            "webhook_url": f"http://127.0.0.1:{port}/tg/hook",
            "webhook_port": port,
            "webhook_secret": "s3cret_token-2",
        },
    )
    async with running_bot(settings, api) as h:
        message = {
            "message_id": 7,
            "date": 0,
            "chat": api.chat(7301),
            "from": api.user(7301),
            "text": "/help",
        }
        body = json.dumps({"update_id": 70_001, "message": message}).encode()

        def post() -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/tg/hook", data=body)
            request.add_header("X-Telegram-Bot-Api-Secret-Token", "s3cret_token-2")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        real = h.channel.group.db
        h.channel.group.db = FailingCommit(real)
        assert await asyncio.to_thread(post) == 500
        journaled = real.execute("SELECT count(*) FROM updates WHERE update_id = 70001")
        assert journaled.fetchone() == (0,)
        # Telegram's retry gets through.
        assert await asyncio.to_thread(post) == 200
        await h.handled(70_001)
        assert "/faq" in (await h.messages(7301, 1))[0].text


async def test_an_answer_that_reaches_the_applicant_by_no_way_is_not_reported_sent(
    tmp_path: Path, api: BotApiStandIn
):
    """403 on Telegram and the address refused: the enquiry is open again, the admin chat
    is told what to do, and nothing claims the answer was delivered."""
    from smtp_support import Handler

    handler = Handler(refuse_rcpt={"ada@example.org": "550 5.1.1 no such mailbox"})
    async with SmtpServer(handler) as smtp:
        settings = make_settings(tmp_path, api, smtp_port=smtp.port)
        async with running_bot(settings, api) as h:
            ref = await fill_form(h, 8101, "Can a foundation lead the consortium?")
            await admin_post(h, ref)
            api.blocked.add(8101)
            await h.say(ADMIN_CHAT, f"/reply {ref} Yes, it can.", user_id=ADMIN_USER)
            told = await until(
                lambda: [
                    m for m in api.bot_messages(ADMIN_CHAT) if "could not be delivered" in m.text
                ],
                limit=30,
                what="the undelivered answer reported",
            )
            assert "ada@example.org" in told[0].text and f"/close {ref}" in told[0].text
            row = get_enquiry(h.app.db, ref)
            assert row is not None and row["status"] == "open" and row["answered_at"] is None
            events = [
                e[0]
                for e in h.app.db.execute(
                    "SELECT event FROM audit WHERE ref = ? ORDER BY id", [ref]
                ).fetchall()
            ]
            assert "answer_failed" in events
            statuses = h.app.db.execute(
                "SELECT transport, status FROM deliveries WHERE kind = 'answer' ORDER BY id"
            ).fetchall()
            assert sorted(statuses) == [("smtp", "dead"), ("telegram", "dead")]
    # Nothing reached the applicant after the block.
    assert not any("Yes, it can" in m.text for m in api.bot_messages(8101))
    assert [r.rcpt_tos for r in handler.received if "ada@example.org" in r.rcpt_tos] == []


async def test_an_answer_the_e_mail_carries_stands_when_telegram_refuses(
    tmp_path: Path, api: BotApiStandIn
):
    """403 on Telegram, but the answer mail was accepted: answered, nothing to report."""
    async with SmtpServer() as smtp:
        settings = make_settings(tmp_path, api, smtp_port=smtp.port)
        async with running_bot(settings, api) as h:
            ref = await fill_form(h, 8102, "Can a chamber of commerce be a partner?")
            await admin_post(h, ref)
            api.blocked.add(8102)
            await h.say(ADMIN_CHAT, f"/reply {ref} Yes, it can.", user_id=ADMIN_USER)
            await until(
                lambda: (
                    sorted(
                        h.app.db.execute(
                            "SELECT transport, status FROM deliveries WHERE kind = 'answer'"
                        ).fetchall()
                    )
                    == [("smtp", "sent"), ("telegram", "dead")]
                ),
                limit=30,
                what="both ways tried",
            )
            row = get_enquiry(h.app.db, ref)
            assert row is not None and row["status"] == "answered"
            assert not [m for m in api.bot_messages(ADMIN_CHAT) if "could not be" in m.text]
    assert any("ada@example.org" in r.rcpt_tos for r in smtp.handler.received)


async def test_an_admin_group_upgraded_to_a_supergroup_is_followed(
    tmp_path: Path, api: BotApiStandIn
):
    """ChatMigrated: the new id is kept, the post goes there, the operator is told."""
    from bot.enquiries import admin_chat_problems

    new_chat = -1009999000111
    settings = make_settings(tmp_path, api)
    api.migrated[ADMIN_CHAT] = new_chat
    api.chat(new_chat, "supergroup")
    async with running_bot(settings, api) as h:
        ref = await fill_form(h, 8201, "Is a university eligible as a partner?")
        posts = await until(
            lambda: [m for m in api.bot_messages(new_chat) if ref in m.text],
            what="the post in the supergroup",
        )
        assert posts
        notice = [m for m in api.bot_messages(new_chat) if "supergroup" in m.text]
        assert notice and str(new_chat) in notice[0].text
        assert api.bot_messages(ADMIN_CHAT) == []
        problems = admin_chat_problems(h.app.db)
        assert problems and f"admin_chat_id = {new_chat}" in problems[0]
