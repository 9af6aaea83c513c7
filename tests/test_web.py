"""The web channel over HTTP, black-box: hostile input, origins, limits, sessions, health.

The server is the real one (uvicorn on a loopback port, the app, SQLite in tmp_path);
requests come from httpx. X-Forwarded-For stands in for different client addresses (uvicorn
trusts it from 127.0.0.1, as behind a local reverse proxy).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.channels.web.guards import MAX_BODY, MAX_TEXT
from bot.channels.web.limits import SlidingWindow
from bot.channels.web.render import (
    bot_message,
    known_links,
    segments,
    session_id,
    valid_token,
)
from bot.dialogue.engine import Button, Reply
from bot.settings.load import SettingsError, settings_from_mapping
from bot.settings.web import WebSettings
from tests.web_support import WebRun, running_web, web_settings

OTHER_SITE = "https://call.example.org"


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[WebRun]:
    async with running_web(web_settings(tmp_path / "var", allowed_origins=[OTHER_SITE])) as run:
        yield run


def client(run: WebRun) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=run.base, timeout=60)


async def post(
    http: httpx.AsyncClient,
    run: WebRun,
    payload: Any,
    *,
    token: str | None = None,
    origin: str | None = "self",
    address: str = "192.0.2.1",
    raw: bytes | None = None,
) -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-Forwarded-For": address}
    if origin == "self":
        headers["Origin"] = run.base
    elif origin is not None:
        headers["Origin"] = origin
    if token:
        headers["X-Chat-Session"] = token
    body = raw if raw is not None else json.dumps(payload).encode()
    return await http.post("/chat/api/message", content=body, headers=headers)


def texts_of(response: httpx.Response) -> str:
    return "\n".join(
        "".join(part["text"] for part in message["parts"])
        for message in response.json()["messages"]
    )


# ---------------------------------------------------------------- hostile input


async def test_html_and_script_come_back_as_data_never_as_links(web: WebRun) -> None:
    hostile = '<script>alert(1)</script><a href="javascript:alert(2)">x</a> https://evil.example/x'
    async with client(web) as http:
        response = await post(http, web, {"text": hostile})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    messages = response.json()["messages"]
    assert messages[0] == {"id": 1, "from": "user", "parts": [{"text": hostile}]}
    for message in messages:
        for part in message["parts"]:
            assert "href" not in part or part["href"] in web.channel.conversation.links


async def test_ten_thousand_characters_get_an_answer_one_more_a_clear_refusal(
    web: WebRun,
) -> None:
    async with client(web) as http:
        response = await post(http, web, {"text": "é" * MAX_TEXT})
        assert response.status_code == 200
        assert texts_of(response).strip()
        longer = await post(http, web, {"text": "a" * (MAX_TEXT + 1)})
        assert longer.status_code == 413
        assert "too long" in longer.json()["error"]
        huge = await post(http, web, None, raw=b'{"text": "' + b"a" * MAX_BODY + b'"}')
        assert huge.status_code == 413
        assert "too large" in huge.json()["error"]


MALFORMED = (
    b"{not json",
    b"",
    b"[1, 2]",
    b'"text"',
    b'{"text": 5}',
    b'{"text": "a", "button": "b"}',
    b'{"command": "reply ECCP-0001 hi"}',
    b'{"button": ""}',
    b'{"text": "hi", "lang": 3}',
    b"\xff\xfe\x00",
)


async def test_malformed_posts_get_400_with_a_reason(web: WebRun) -> None:
    async with client(web) as http:
        for raw in MALFORMED:
            response = await post(http, web, None, raw=raw)
            assert response.status_code == 400, raw
            assert response.json()["error"]


async def test_posts_from_other_origins_or_without_json_are_refused(web: WebRun) -> None:
    async with client(web) as http:
        for origin in ("https://evil.example", None, "null", web.base + ".evil.example"):
            response = await post(http, web, {"text": "hello"}, origin=origin)
            assert response.status_code == 403, origin
            assert "Origin" in response.json()["error"]
        allowed = await post(http, web, {"text": "hello"}, origin=OTHER_SITE)
        assert allowed.status_code == 200
        form = await http.post(
            "/chat/api/message",
            content=b"text=hello",
            headers={"Origin": web.base, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 415
        # The browser's preflight: allowed for the configured site only.
        ok = await http.options(
            "/chat/api/message",
            headers={
                "Origin": OTHER_SITE,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-chat-session",
            },
        )
        assert ok.headers.get("access-control-allow-origin") == OTHER_SITE
        refused = await http.options(
            "/chat/api/message",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in refused.headers
    assert web.app.db is not None
    # Refused posts never reached the engine.
    assert web.app.db.conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1


async def test_a_flood_is_refused_and_an_enquiry_from_elsewhere_is_not_lost(web: WebRun) -> None:
    async with client(web) as http:
        first = await post(http, web, {"command": "start"}, address="203.0.113.5")
        token = first.json()["session"]
        codes = [
            (await post(http, web, {"text": f"flood {n}"}, token=token, address="203.0.113.5"))
            for n in range(60)
        ]
        statuses = {response.status_code for response in codes}
        assert statuses <= {200, 429}
        assert 429 in statuses
        limited = next(r for r in codes if r.status_code == 429)
        assert int(limited.headers["Retry-After"]) >= 1
        assert "too many" in limited.json()["error"]
        # New sessions from one address are limited too.
        fresh = [
            (await post(http, web, {"command": "start"}, address="203.0.113.9")).status_code
            for _ in range(WebSettings().new_sessions_per_address + 3)
        ]
        assert fresh.count(200) == WebSettings().new_sessions_per_address and 429 in fresh
        # Meanwhile an applicant elsewhere completes an enquiry.
        ref, _ = await full_enquiry(http, web, address="198.51.100.7")
    assert web.app.db is not None
    rows = web.app.db.conn.execute("SELECT ref, email FROM enquiries").fetchall()
    assert rows == [(ref, "grace@example.org")]
    mails = web.app.db.conn.execute(
        "SELECT COUNT(*) FROM deliveries WHERE transport = 'smtp' AND kind = 'enquiry'"
    ).fetchone()[0]
    assert mails == 1


async def test_the_flood_limits_are_the_web_settings(tmp_path: Path) -> None:
    limits = {
        "posts_per_session": 3,
        "posts_per_address": 4,
        "new_sessions_per_address": 2,
        "streams_per_session": 1,
    }
    async with (
        running_web(web_settings(tmp_path / "var", **limits)) as run,
        client(run) as http,
    ):
        first = await post(http, run, {"command": "start"}, address="203.0.113.5")
        token = first.json()["session"]
        again = [
            (await post(http, run, {"text": "hi"}, token=token, address="203.0.113.5")).status_code
            for _ in range(3)
        ]
        # The session's first post counted: two more pass, the next is refused.
        assert again == [200, 200, 429]
        # Four posts from 203.0.113.5 so far: the address is at its limit for any session.
        assert (
            await post(http, run, {"command": "start"}, address="203.0.113.5")
        ).status_code == 429
        fresh = [
            (await post(http, run, {"command": "start"}, address="203.0.113.9")).status_code
            for _ in range(3)
        ]
        assert fresh == [200, 200, 429]
        headers = {"X-Chat-Session": token}
        async with http.stream("GET", "/chat/api/events", headers=headers) as open_page:
            assert open_page.status_code == 200
            second = await http.get("/chat/api/events", headers=headers)
            assert second.status_code == 429


def test_web_limits_must_be_at_least_one() -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_mapping({"web": {"posts_per_session": 0}}, "test")
    assert "web.posts_per_session: must be at least 1, got 0" in str(caught.value)


async def full_enquiry(http: httpx.AsyncClient, run: WebRun, *, address: str) -> tuple[str, str]:
    """Fill the form over HTTP like the page does; returns the reference and the token."""
    start = await post(http, run, {"command": "start", "lang": "en"}, address=address)
    token = start.json()["session"]

    async def say(payload: dict[str, str]) -> httpx.Response:
        response = await post(http, run, {**payload, "lang": "en"}, token=token, address=address)
        assert response.status_code == 200, response.text
        return response

    assert (await say({"button": "contact"})).json()["field"] == "name"
    assert (await say({"text": "Grace <script>Hopper</script>"})).json()["field"] in (
        "name",
        "email",
    )
    step = (await say({"text": "Grace Hopper"})).json()
    if step.get("field") == "name":
        step = (await say({"text": "Grace Hopper"})).json()
    refused = (await say({"text": "grace@@example"})).json()
    assert refused["field"] == "email" and "valid e-mail" in refused["error"]
    assert (await say({"text": "grace@example.org"})).json()["field"] == "organisation"
    assert (await say({"text": "COBOL Cluster"})).json()["field"] == "country"
    assert (await say({"button": "c:IT"})).json()["field"] == "question"
    await say({"text": "Can a cluster from Iceland join the consortium?"})
    await say({"button": "consent:yes"})
    done = await say({"button": "send"})
    found = [word for word in texts_of(done).split() if word.startswith("ECCP-")]
    assert found, texts_of(done)
    return found[0].strip(".,:;!?"), token


async def test_no_personal_data_in_logs_or_urls(
    web: WebRun, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with client(web) as http:
        await full_enquiry(http, web, address="198.51.100.8")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in ("grace@example.org", "Grace Hopper", "COBOL Cluster", "Iceland"):
        assert secret not in logged


# ---------------------------------------------------------------- sessions and streams


async def test_unknown_or_malformed_tokens_start_a_new_session(web: WebRun) -> None:
    async with client(web) as http:
        for token in ("x" * 32 + "'", "short", "a" * 500):
            response = await post(http, web, {"command": "start"}, token=token)
            assert response.status_code == 200
            assert valid_token(response.json()["session"])
        stream = await http.get("/chat/api/events")
        assert stream.status_code == 401


async def test_event_stream_replays_the_conversation_after_last_event_id(web: WebRun) -> None:
    async with client(web) as http:
        first = await post(http, web, {"command": "start", "lang": "en"})
        token = first.json()["session"]
        await post(http, web, {"text": "What is the budget?"}, token=token)
        headers = {"X-Chat-Session": token, "Last-Event-ID": "1"}
        async with http.stream("GET", "/chat/api/events", headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events: list[str] = []
            buffer = ""
            async for chunk in response.aiter_text():
                buffer += chunk
                if "event: ready" in buffer:
                    break
            events = [block for block in buffer.split("\n\n") if block.startswith("id:")]
    ids = [int(block.split("\n")[0][3:]) for block in events]
    assert ids and min(ids) == 2 and ids == sorted(ids)
    assert all(json.loads(block.split("data: ", 1)[1])["id"] > 1 for block in events)


async def test_the_page_learns_the_conversations_language(web: WebRun) -> None:
    """Each answer names the conversation's language, so the page's own labels follow a
    /language choice; a reloaded page learns it from the event stream's ready event."""
    async with client(web) as http:
        first = await post(http, web, {"command": "start", "lang": "en"})
        token = first.json()["session"]
        assert first.json()["lang"] == "en"
        await post(http, web, {"command": "language", "lang": "en"}, token=token)
        chosen = await post(http, web, {"button": "lang:it", "lang": "en"}, token=token)
        assert chosen.json()["lang"] == "it"
        # The page still says "en" (its first language): the choice wins.
        later = await post(http, web, {"text": "What is the budget?", "lang": "en"}, token=token)
        assert later.json()["lang"] == "it"
        headers = {"X-Chat-Session": token, "Last-Event-ID": "1000"}
        async with http.stream("GET", "/chat/api/events", headers=headers) as response:
            buffer = ""
            async for chunk in response.aiter_text():
                buffer += chunk
                if "event: ready" in buffer and buffer.endswith("\n\n"):
                    break
    ready = buffer.split("event: ready\ndata: ", 1)[1].split("\n", 1)[0]
    assert json.loads(ready) == {"count": 0, "lang": "it"}


async def test_health_reports_database_backlog_and_telegram(web: WebRun) -> None:
    async with client(web) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "backlog": 0,
        "telegram": {"last_contact": None},
    }


async def test_page_and_assets_have_safe_headers(web: WebRun) -> None:
    async with client(web) as http:
        page = await http.get("/chat?lang=it")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert f"frame-ancestors {OTHER_SITE}" in page.headers["content-security-policy"]
        assert '<html lang="it">' in page.text
        hostile = await http.get("/chat", params={"lang": '"><script>'})
        assert '<script>"' not in hostile.text and '"><script>' not in hostile.text
        widget = await http.get("/widget.js")
        assert widget.headers["content-type"].startswith("text/javascript")
        script = await http.get("/chat/chat.js")
        assert script.text.startswith("window.CLUSTERBOT_SETUP = ")
        assert "</" not in script.text.split("\n", 1)[0]
        assert (await http.get("/chat/../bot/settings.py")).status_code == 404
        assert (await http.get("/chat/secret.txt")).status_code == 404


# ---------------------------------------------------------------- pure parts


def test_links_only_for_known_urls() -> None:
    links = frozenset({"https://ec.europa.eu/call", "mailto:info@example.org"})
    parts = segments(
        "See https://ec.europa.eu/call. Or https://evil.example or write to info@example.org!",
        links,
    )
    assert [p.get("href") for p in parts if "href" in p] == [
        "https://ec.europa.eu/call",
        "mailto:info@example.org",
    ]
    assert "".join(p["text"] for p in parts).count("evil.example") == 1
    assert segments("", links) == [{"text": ""}]
    assert segments("javascript:alert(1)", links) == [{"text": "javascript:alert(1)"}]


def test_known_links_come_from_the_call_facts(tmp_path: Path) -> None:
    from bot.knowledge import KnowledgeBase

    settings = web_settings(tmp_path)
    links = known_links(KnowledgeBase.from_settings(settings), "segreteria@example.org")
    assert "mailto:segreteria@example.org" in links
    assert any(link.startswith("https://ec.europa.eu/") for link in links)


def test_bot_message_shape() -> None:
    reply = Reply("Hi\x00 there", (Button("a", " Yes "),), title="T")
    assert bot_message(reply, frozenset()) == {
        "parts": [{"text": "Hi there"}],
        "title": "T",
        "buttons": [{"id": "a", "label": "Yes"}],
    }


@given(st.text(max_size=300))
def test_segments_keep_every_character(text: str) -> None:
    links = frozenset({"https://ec.europa.eu/call"})
    assert "".join(part["text"] for part in segments(text, links)) == text


def test_tokens_and_session_ids() -> None:
    from bot.channels.web.render import new_token

    token = new_token()
    assert valid_token(token) and not valid_token(token + "a") and not valid_token(None)
    assert session_id(token) != token and len(session_id(token)) == 32


def test_sliding_window_counts_per_key() -> None:
    now = [0.0]
    window = SlidingWindow(2, 60.0, clock=lambda: now[0], max_keys=3)
    assert window.allow("a") and window.allow("a") and not window.allow("a")
    assert window.allow("b")
    assert window.retry_after("a") == 61
    now[0] = 60.5
    assert window.allow("a")
    for key in "cdefg":
        assert window.allow(key)


def test_web_settings_are_validated() -> None:
    ok = settings_from_mapping(
        {
            "web": {
                "enabled": True,
                "public_url": "https://chat.example.org/",
                "allowed_origins": ["https://Call.Example.org/"],
            }
        }
    )
    assert ok.web.public_origin == "https://chat.example.org"
    assert ok.web.allowed_origins == ("https://call.example.org",)
    for bad in (
        {"allowed_origins": ["https://x.org/page"]},
        {"allowed_origins": ["*"]},
        {"public_url": "chat.example.org"},
        {"port": 70000},
        {"listen": ""},
    ):
        with pytest.raises(SettingsError) as caught:
            settings_from_mapping({"web": bad}, "c.toml")
        assert caught.value.problems[0].startswith("c.toml: web.")
    # A webhook beside the web chat needs a path of its own.
    for path in ("", "/", "/healthz", "/chat/api/message"):
        with pytest.raises(SettingsError) as caught:
            settings_from_mapping(
                {
                    "web": {"enabled": True},
                    "telegram": {"webhook_url": f"https://bot.example.org{path}"},
                },
                "c.toml",
            )
        assert "telegram.webhook_url" in caught.value.problems[0]
        assert "path of its own" in caught.value.problems[0]
    settings_from_mapping(
        {"web": {"enabled": True}, "telegram": {"webhook_url": "https://bot.example.org/tg/x1"}}
    )


# ---------------------------------------------------------------- fuzzing the API


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=50),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(["text", "button", "command", "lang", "x"]), children, max_size=3
            )
        ),
        max_leaves=6,
    )
)
async def test_any_json_gets_an_answer_or_a_clear_refusal(web: WebRun, payload: Any) -> None:
    async with client(web) as http:
        response = await post(http, web, None, raw=json.dumps(payload).encode())
    assert response.status_code in (200, 400, 413)
    assert response.json()


async def test_answers_are_web_deliveries_of_the_queue_shown_once(web: WebRun) -> None:
    from bot.channels.web import transcript
    from bot.channels.web.transport import WebTransport
    from bot.deliveries.store import get
    from bot.enquiries import answer_enquiry
    from bot.storage import utc_now

    async with client(web) as http:
        ref, token = await full_enquiry(http, web, address="198.51.100.30")
    db = web.app.db
    assert db is not None
    session = session_id(token)
    answer_enquiry(db, ref, "Yes, <i>it</i> can.", actor="cli", now=utc_now())
    rows = db.conn.execute(
        "SELECT id, kind, recipient, payload FROM deliveries WHERE transport = 'web'"
    ).fetchall()
    assert [row[1:] for row in rows] == [("answer", session, "Yes, <i>it</i> can.")]
    web.app.kick()
    deadline = asyncio.get_running_loop().time() + 60
    while get(db, rows[0][0]).status != "sent":  # type: ignore[union-attr]
        assert asyncio.get_running_loop().time() < deadline, "the web delivery was not sent"
        await asyncio.sleep(0.02)
    shown = transcript.history(db, session)
    assert shown[-1]["parts"] == [{"text": "Yes, <i>it</i> can."}] and ref in shown[-1]["title"]
    # A second attempt of the same delivery (a crash before its outcome was recorded) finds
    # the stored message and shows nothing twice.
    delivery = get(db, rows[0][0])
    assert delivery is not None
    outcome = await WebTransport(web.channel).send(delivery)
    assert type(outcome).__name__ == "Sent"
    assert len(transcript.history(db, session)) == len(shown)
