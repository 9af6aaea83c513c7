"""The Bot API stand-in itself: validation against api.json, HTML rules, faults, offsets."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from telegram_standin import ApiError, BotApiStandIn, parse_html


@pytest.fixture
def api() -> Iterator[BotApiStandIn]:
    """A running stand-in."""
    with BotApiStandIn() as standin:
        yield standin


def call(
    api: BotApiStandIn, method: str, params: dict[str, Any] | None = None, *, form: bool = False
) -> tuple[int, dict[str, Any]]:
    """POST a Bot API call as JSON (or as a form, like PTB) and return (status, body)."""
    url = f"{api.base_url}{api.token}/{method}"
    if form:
        encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (params or {}).items()}
        data = urllib.parse.urlencode(encoded).encode()
        ctype = "application/x-www-form-urlencoded"
    else:
        data = json.dumps(params or {}).encode()
        ctype = "application/json"
    request = urllib.request.Request(url, data=data, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_known_methods_and_token(api: BotApiStandIn):
    """getMe works; a wrong token is 401, an unknown method 404."""
    status, body = call(api, "getMe")
    assert status == 200 and body["result"]["is_bot"] is True
    status, body = call(api, "getme")
    assert status == 200
    status, body = call(api, "sendTelepathy", {"chat_id": 1})
    assert status == 404 and body["ok"] is False
    url = f"{api.base_url}123:wrong/getMe"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=5)
    assert info.value.code == 401


@pytest.mark.parametrize("form", [False, True])
def test_required_unknown_and_typed_fields(api: BotApiStandIn, form: bool):
    """Missing required fields, unknown fields and wrong types are 400s, in JSON and forms."""
    status, body = call(api, "sendMessage", {"chat_id": 5}, form=form)
    assert status == 400 and "text" in body["description"]
    status, body = call(
        api, "sendMessage", {"chat_id": 5, "text": "hi", "colour": "red"}, form=form
    )
    assert status == 400 and "colour" in body["description"]
    status, body = call(
        api, "sendMessage", {"chat_id": 5, "text": "hi", "disable_notification": "maybe"}, form=form
    )
    assert status == 400
    markup = {"inline_keyboard": [[{"text": "a", "callback_data": "x", "bogus": 1}]]}
    status, body = call(
        api, "sendMessage", {"chat_id": 5, "text": "hi", "reply_markup": markup}, form=form
    )
    assert status == 400 and "bogus" in body["description"]
    status, body = call(api, "sendMessage", {"chat_id": 5, "text": "hi"}, form=form)
    assert status == 200 and body["result"]["text"] == "hi"


def test_text_limits_and_callback_data(api: BotApiStandIn):
    """Empty text, over 4 096 characters after parsing, and callback_data over 64 bytes."""
    assert call(api, "sendMessage", {"chat_id": 5, "text": "   "})[0] == 400
    assert call(api, "sendMessage", {"chat_id": 5, "text": "x" * 4097})[0] == 400
    assert call(api, "sendMessage", {"chat_id": 5, "text": "x" * 4096})[0] == 200
    # Entities do not count: 4 096 visible characters inside a bold tag pass.
    html = "<b>" + "&lt;" * 4096 + "</b>"
    assert call(api, "sendMessage", {"chat_id": 5, "text": html, "parse_mode": "HTML"})[0] == 200
    # Astral characters count twice (UTF-16).
    assert call(api, "sendMessage", {"chat_id": 5, "text": "𝕏" * 2049})[0] == 400
    long_data = {"inline_keyboard": [[{"text": "a", "callback_data": "é" * 33}]]}
    status, body = call(api, "sendMessage", {"chat_id": 5, "text": "k", "reply_markup": long_data})
    assert status == 400 and "BUTTON_DATA_INVALID" in body["description"]
    ok_data = {"inline_keyboard": [[{"text": "a", "callback_data": "x" * 64}]]}
    assert call(api, "sendMessage", {"chat_id": 5, "text": "k", "reply_markup": ok_data})[0] == 200


@pytest.mark.parametrize(
    "text",
    [
        "<b>unclosed",
        "a < b",
        "fish & chips",
        "&nbsp;",
        "<br>",
        "<b><i>x</b></i>",
        "</b>",
        '<span class="x">s</span>',
        '<a href="">x</a>',
        "<p>para</p>",
        "<b/>",
        "&#xD800;",
    ],
)
def test_html_telegram_cannot_parse_is_refused(api: BotApiStandIn, text: str):
    """Like Telegram: 400 "can't parse entities"."""
    status, body = call(api, "sendMessage", {"chat_id": 5, "text": text, "parse_mode": "HTML"})
    assert status == 400
    assert body["description"].startswith("Bad Request: can't parse entities")


@pytest.mark.parametrize(
    "text,plain",
    [
        ("<b>b</b> <strong>s</strong> <i>i</i> <em>e</em> <u>u</u> <ins>n</ins>", "b s i e u n"),
        ("<s>s</s><strike>k</strike><del>d</del>", "skd"),
        ('<span class="tg-spoiler">x</span><tg-spoiler>y</tg-spoiler>', "xy"),
        ('<a href="https://example.org/?a=1&amp;b=2">l</a>', "l"),
        ('<pre><code class="language-python">x = 1</code></pre>', "x = 1"),
        ("<blockquote>q</blockquote> <blockquote expandable>r</blockquote>", "q r"),
        ('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>', "👍"),
        ("&lt;&gt;&amp;&quot;&#39;&#x27; > ok", "<>&\"'' > ok"),
    ],
)
def test_html_telegram_accepts(text: str, plain: str):
    """Every tag and entity Telegram allows parses to its plain text."""
    assert parse_html(text) == plain


def test_parse_error_names_the_problem():
    """The description points at the fault, like Telegram's."""
    with pytest.raises(ApiError) as info:
        parse_html("ok <b>bold")
    assert 'start tag "b"' in info.value.description
    with pytest.raises(ApiError) as info:
        parse_html("a & b")
    assert "byte offset 2" in info.value.description


def test_injected_429_and_502(api: BotApiStandIn):
    """fail_next answers the next N calls of a method with the chosen error."""
    api.fail_next("sendMessage", 2, status=429, retry_after=3)
    api.fail_next("getMe", 1, status=502)
    status, body = call(api, "sendMessage", {"chat_id": 5, "text": "a"})
    assert status == 429 and body["parameters"] == {"retry_after": 3}
    assert call(api, "sendMessage", {"chat_id": 5, "text": "a"})[0] == 429
    assert call(api, "sendMessage", {"chat_id": 5, "text": "a"})[0] == 200
    assert call(api, "getMe")[0] == 502
    assert call(api, "getMe")[0] == 200
    assert api.rejected() == []
    assert [r.injected for r in api.calls("sendMessage")] == [True, True, False]


def test_get_updates_offsets_and_long_poll(api: BotApiStandIn):
    """Updates below the offset are confirmed and gone; a long poll returns on arrival."""
    first = api.push_message(1, "one")
    second = api.push_message(1, "two")
    _, body = call(api, "getUpdates", {"timeout": 0})
    assert [u["update_id"] for u in body["result"]] == [first, second]
    # Not confirmed yet: fetched again.
    _, body = call(api, "getUpdates", {"timeout": 0})
    assert len(body["result"]) == 2
    _, body = call(api, "getUpdates", {"offset": second, "timeout": 0})
    assert [u["update_id"] for u in body["result"]] == [second]
    _, body = call(api, "getUpdates", {"offset": second + 1, "timeout": 0})
    assert body["result"] == [] and api.pending_updates() == 0

    timer = threading.Timer(0.3, lambda: api.push_message(2, "late"))
    timer.start()
    # Returned by the push (the 30 s timeout would leave the result empty).
    _, body = call(api, "getUpdates", {"offset": second + 1, "timeout": 30}, form=True)
    assert body["result"][0]["message"]["text"] == "late"
    assert body["result"][0]["message"]["chat"]["type"] == "private"


def test_edit_rules_and_callback_answers(api: BotApiStandIn):
    """Edits need a bot message and a change; a callback query is answered once."""
    _, body = call(api, "sendMessage", {"chat_id": 5, "text": "a"})
    message_id = body["result"]["message_id"]
    edit = {"chat_id": 5, "message_id": message_id, "text": "a"}
    status, body = call(api, "editMessageText", edit)
    assert status == 400 and "not modified" in body["description"]
    assert call(api, "editMessageText", {**edit, "text": "b"})[0] == 200
    assert call(api, "editMessageText", {**edit, "message_id": 999, "text": "c"})[0] == 400
    message = api.bot_messages(5)[0]
    _, query = api.push_callback(message, "x")
    assert call(api, "answerCallbackQuery", {"callback_query_id": query})[0] == 200
    assert call(api, "answerCallbackQuery", {"callback_query_id": query})[0] == 400
    assert call(api, "sendChatAction", {"chat_id": 5, "action": "typing"})[0] == 200
    assert call(api, "sendChatAction", {"chat_id": 5, "action": "dancing"})[0] == 400


def test_commands_and_scopes(api: BotApiStandIn):
    """setMyCommands validates commands and the scope's kind."""
    commands = [{"command": "start", "description": "Start"}]
    assert call(api, "setMyCommands", {"commands": commands, "language_code": "it"})[0] == 200
    scope = {"type": "chat", "chat_id": -100}
    assert call(api, "setMyCommands", {"commands": commands, "scope": scope})[0] == 200
    assert call(api, "setMyCommands", {"commands": commands, "scope": {"type": "chat"}})[0] == 400
    bad = [{"command": "Start!", "description": "x"}]
    assert call(api, "setMyCommands", {"commands": bad})[0] == 400
    assert call(api, "setMyCommands", {"commands": commands, "language_code": "ita"})[0] == 400


def test_the_vendored_api_description_matches_the_shared_one() -> None:
    from telegram_standin import SHARED_SPEC_PATH, SPEC_PATH

    if not SHARED_SPEC_PATH.exists():
        pytest.skip("no ../shared checkout beside this clone")
    assert SPEC_PATH.read_bytes() == SHARED_SPEC_PATH.read_bytes()
