"""Faults found by probing the Telegram channel: floods, poison updates, the flood limits."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from telegram_harness import ADMIN_CHAT, make_settings, running_bot, until
from telegram_standin import BotApiStandIn

from bot.app import App
from bot.cli import main
from bot.storage import utc_now


def unhandled(db) -> int:
    return int(db.execute("SELECT count(*) FROM updates WHERE handled_at IS NULL").fetchone()[0])


# -- floods ----------------------------------------------------------------------------------


async def test_a_flood_gets_one_notice_and_the_rest_is_dropped(tmp_path: Path, api: BotApiStandIn):
    """300 messages at once: 20 answered (the per-minute limit), one notice, 279 dropped."""
    settings = make_settings(
        tmp_path, api, telegram={"max_messages_per_chat_per_second": 0}, admin_chat=0
    )
    async with running_bot(settings, api) as h:
        ids = [api.push_message(8001, "What is the deadline?") for _ in range(300)]
        await h.handled(ids[-1], limit=60)
        await until(lambda: unhandled(h.app.db) == 0 and h.idle(), 60, "every update handled")
        texts = [m.text for m in api.bot_messages(8001)]
        notices = [t for t in texts if "very quickly" in t]
        assert len(notices) == 1
        assert len(texts) == 20 + 1
        # The notice comes right after the last admitted answer.
        assert texts[-1] == notices[0]
        # Someone else is answered as usual.
        assert await h.say(8002, "/help")


async def test_a_backlog_is_judged_by_when_it_was_written(tmp_path: Path, api: BotApiStandIn):
    """Handled late (the clock runs minutes ahead per message), a flood still gets 20."""
    ticks = [0]

    def slow_clock() -> datetime:
        # Every look at the clock is a minute later: handling time says "no flood at all".
        ticks[0] += 1
        return utc_now() + timedelta(minutes=ticks[0])

    settings = make_settings(
        tmp_path, api, telegram={"max_messages_per_chat_per_second": 0}, admin_chat=0
    )
    async with running_bot(settings, api, clock=slow_clock) as h:
        ids = [api.push_message(8101, "/help") for _ in range(60)]
        await h.handled(ids[-1], limit=60)
        await until(lambda: unhandled(h.app.db) == 0 and h.idle(), 60, "every update handled")
        texts = [m.text for m in api.bot_messages(8101)]
        assert sum("very quickly" in t for t in texts) == 1
        assert len(texts) == 20 + 1


# -- poison updates ----------------------------------------------------------------------------


def journal_left_by_a_crashing_run(settings, update: dict, attempts: int) -> None:
    """What a bot that died while handling `update` (`attempts` times) leaves on disk."""
    import asyncio

    asyncio.run(_journal_async(settings, update, attempts))


def test_an_update_that_keeps_killing_the_bot_is_set_aside(
    tmp_path: Path, api: BotApiStandIn, capsys: pytest.CaptureFixture[str]
):
    """Journaled, then the bot died handling it on three starts: the fourth sets it aside,
    reports it in the admin chat and `clusterbot check`, and goes on."""
    import asyncio

    settings = make_settings(tmp_path, api)
    poison = {
        "update_id": 50,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": "not-a-number", "type": "private"},
            "from": api.user(8201),
            "text": "hi",
        },
    }
    journal_left_by_a_crashing_run(settings, poison, attempts=3)

    async def run() -> None:
        async with running_bot(settings, api) as h:
            # The bot goes on: others are answered.
            assert await h.say(8202, "/help")
            report = await h.messages(ADMIN_CHAT, 1)
            assert "50" in report[0].text and "set aside" in report[0].text
            row = h.app.db.execute(
                "SELECT handled_at, quarantined_at, payload FROM updates WHERE update_id = 50"
            ).fetchone()
            # Kept (payload and all), never handled.
            assert row[0] is None and row[1] is not None and "not-a-number" in row[2]
            assert h.channel.health()["unhandled_updates"] == 0

    asyncio.run(run())
    config = tmp_path / "c.toml"
    config.write_text(f'language = "en"\ndata_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    capsys.readouterr()
    assert main(["check", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "Telegram update 50" in err and "set aside" in err


async def test_a_handled_once_update_is_not_counted_as_poison(tmp_path: Path, api: BotApiStandIn):
    """An update replayed after one crash is handled normally (and counted once)."""
    settings = make_settings(tmp_path, api)
    message = {
        "message_id": 1,
        "date": 0,
        "chat": api.chat(8301),
        "from": api.user(8301),
        "text": "/help",
    }
    await _journal_async(settings, {"update_id": 60, "message": message}, attempts=1)
    async with running_bot(settings, api) as h:
        await h.handled(60)
        assert "/faq" in (await h.messages(8301, 1))[0].text
        row = h.app.db.execute("SELECT attempts, quarantined_at FROM updates WHERE update_id = 60")
        assert row.fetchone() == (2, None)


async def _journal_async(settings, update: dict, attempts: int) -> None:
    async with App(settings) as app:
        app.db.execute(
            "INSERT INTO updates (update_id, payload, received_at, attempts) VALUES (?,?,?,?)",
            [update["update_id"], json.dumps(update), utc_now().isoformat(), attempts],
        )
        app.db.conn.commit()


@pytest.mark.parametrize("chat_id", ["abc", {"nested": 1}, [1, 2], 1.5, None])
async def test_a_malformed_update_does_not_stop_the_bot(tmp_path: Path, chat_id: object):
    """A polled update with a chat id of the wrong type is dealt with, and the bot goes on."""
    # Not the `api` fixture: the stand-in refuses a reply to a chat that does not exist.
    with BotApiStandIn() as api:
        settings = make_settings(tmp_path, api, admin_chat=0)
        async with running_bot(
            settings,
            api,
        ) as h:
            bad = api.push_update(
                {
                    "message": {
                        "message_id": 1,
                        "date": 0,
                        "chat": {"id": chat_id, "type": "private"},
                        "from": api.user(8401),
                        "text": "hi",
                    }
                }
            )
            assert await h.say(8402, "/help")
            await until(
                lambda: (
                    h.app.db.execute(
                        "SELECT handled_at IS NOT NULL OR quarantined_at IS NOT NULL FROM updates "
                        "WHERE update_id = ?",
                        [bad],
                    ).fetchone()
                    == (1,)
                ),
                what="the bad update dealt with",
            )


# -- flood limits --------------------------------------------------------------------------------


async def test_the_default_limits_keep_under_30_messages_a_second(
    tmp_path: Path, api: BotApiStandIn
):
    """90 users at once: every answer arrives, and no second holds more than 30 messages."""
    settings = make_settings(tmp_path, api, admin_chat=0)
    async with running_bot(settings, api) as h:
        ids = [api.push_message(9000 + i, "/help") for i in range(90)]
        for update_id in ids:
            await h.handled(update_id, limit=60)
        times = sorted(r.at for r in api.calls("sendMessage") if r.status == 200)
        assert len(times) >= 90
        busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
        assert busiest <= 30, busiest


async def test_limits_off_sends_without_pacing(tmp_path: Path, api: BotApiStandIn):
    """With both limits 0 the same load is not paced (only Telegram's 429 would slow it)."""
    settings = make_settings(
        tmp_path,
        api,
        admin_chat=0,
        telegram={"max_messages_per_second": 0, "max_messages_per_chat_per_second": 0},
    )
    async with running_bot(settings, api) as h:
        assert h.channel.application.bot.rate_limiter._overall is None
        ids = [api.push_message(9500 + i, "/help") for i in range(40)]
        for update_id in ids:
            await h.handled(update_id, limit=60)
        assert len([r for r in api.calls("sendMessage") if r.status == 200]) >= 40


async def test_a_malformed_webhook_update_is_journaled_and_the_bot_goes_on(tmp_path: Path):
    """Webhook mode: a bad chat id gets its 200 (journaled), then neither it nor a restart
    stops the bot."""
    import asyncio
    import urllib.request

    from smtp_support import free_port

    port = free_port()
    with BotApiStandIn() as api:
        settings = make_settings(
            tmp_path,
            api,
            admin_chat=0,
            telegram={
                "webhook_url": f"http://127.0.0.1:{port}/hook",
                "webhook_port": port,
                "webhook_secret": "s3cret",
            },
        )
        bad = {
            "update_id": 31_337,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": {"not": "a number"}, "type": "private"},
                "from": api.user(8501),
                "text": "hi",
            },
        }

        def post(update: dict) -> int:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/hook", data=json.dumps(update).encode()
            )
            request.add_header("X-Telegram-Bot-Api-Secret-Token", "s3cret")
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)

        for _start in range(2):
            async with running_bot(settings, api) as h:
                assert await asyncio.to_thread(post, bad) == 200
                assert await h.say(8502, "/help")
                await until(
                    lambda: (
                        h.app.db.execute(
                            "SELECT handled_at IS NOT NULL OR quarantined_at IS NOT NULL "
                            "FROM updates WHERE update_id = 31337"
                        ).fetchone()
                        == (1,)
                    ),
                    what="the bad update dealt with",
                )
