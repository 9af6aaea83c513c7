"""A local stand-in for the Telegram Bot API, reached by the real bot through telegram.base_url.

It runs a small HTTP/1.1 server (asyncio, keep-alive) in a background thread and answers
like Telegram: every request is validated against ../shared/telegram-bot-api/api.json (method name,
required fields, unknown fields, basic field types, nested objects), HTML that Telegram
could not parse is refused with "Bad Request: can't parse entities: ...", as are texts over
4 096 characters, empty texts and callback_data over 64 bytes. Faults (429 with retry_after,
502, or any status) can be injected for the next N calls of a method. Every request is
recorded for assertions; tests push user updates (messages, button presses, replies in the
admin chat) that the bot then fetches with getUpdates (offset semantics as documented) or
receives on its webhook.

Usage:

    with BotApiStandIn() as api:
        settings: telegram.base_url = api.base_url, telegram.token = api.token
        api.push_message(chat_id=1, text="/start")
        api.wait_for_messages(chat_id=1, count=1)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A copy of ../shared/telegram-bot-api/api.json lives in the repository, so a clone tested
# anywhere validates against the same description (a test keeps the two identical).
SPEC_PATH = Path(__file__).resolve().parent / "data" / "telegram-bot-api" / "api.json"
SHARED_SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "telegram-bot-api" / "api.json"
DEFAULT_TOKEN = "123456789:TEST-standin-token_abcdefghijklmnop"
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
MAX_CALLBACK_ANSWER = 200
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# The tags Telegram's HTML parse mode understands, and the attributes each may carry.
HTML_TAGS: dict[str, frozenset[str]] = {
    "b": frozenset(),
    "strong": frozenset(),
    "i": frozenset(),
    "em": frozenset(),
    "u": frozenset(),
    "ins": frozenset(),
    "s": frozenset(),
    "strike": frozenset(),
    "del": frozenset(),
    "span": frozenset({"class"}),
    "tg-spoiler": frozenset(),
    "a": frozenset({"href"}),
    "code": frozenset({"class"}),
    "pre": frozenset(),
    "blockquote": frozenset({"expandable"}),
    "tg-emoji": frozenset({"emoji-id"}),
}
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6}));")
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*?)?)\s*(/?)>")
_ATTR = re.compile(r"""\s*([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_BOT_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]+)?")


class ApiError(Exception):
    """A Telegram-like error answer: HTTP status, description and optional parameters."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def bad_request(description: str) -> ApiError:
    """A 400 with Telegram's 'Bad Request: ' prefix."""
    return ApiError(400, f"Bad Request: {description}")


def utf16_len(text: str) -> int:
    """Telegram measures text in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> str:
    """Parse Telegram-style HTML and return the plain text, or raise ApiError like Telegram."""
    out: list[str] = []
    stack: list[str] = []
    pos = 0
    raw = text.encode("utf-8")

    def offset(index: int) -> int:
        return len(text[:index].encode("utf-8"))

    def fail(what: str) -> ApiError:
        return bad_request(f"can't parse entities: {what}")

    del raw
    while pos < len(text):
        char = text[pos]
        if char == "<":
            match = _TAG.match(text, pos)
            if match is None:
                raise fail(f"Unsupported start tag at byte offset {offset(pos)}")
            closing, name, attrs, selfclosing = match.groups()
            name = name.lower()
            if closing:
                if not stack:
                    raise fail(f"Unexpected end tag at byte offset {offset(pos)}")
                if stack[-1] != name:
                    raise fail(
                        f"Unmatched end tag at byte offset {offset(pos)}, "
                        f'expected "</{stack[-1]}>", found "</{name}>"'
                    )
                if attrs.strip():
                    raise fail(f"Unexpected attributes in end tag at byte offset {offset(pos)}")
                stack.pop()
            else:
                if name not in HTML_TAGS or selfclosing:
                    raise fail(f'Unsupported start tag "{name}" at byte offset {offset(pos)}')
                allowed = HTML_TAGS[name]
                seen: dict[str, str] = {}
                rest = attrs
                while rest.strip():
                    attr = _ATTR.match(rest)
                    if attr is None or not attr.group(0):
                        raise fail(f"Can't parse attributes at byte offset {offset(pos)}")
                    value = attr.group(2) or attr.group(3) or attr.group(4) or ""
                    seen[attr.group(1).lower()] = value
                    rest = rest[attr.end() :]
                for attr_name in seen:
                    if attr_name not in allowed:
                        raise fail(
                            f'Unsupported attribute "{attr_name}" of tag "{name}" '
                            f"at byte offset {offset(pos)}"
                        )
                if name == "span" and seen.get("class") != "tg-spoiler":
                    raise fail(
                        f'Tag "span" must have class "tg-spoiler" at byte offset {offset(pos)}'
                    )
                if name == "a" and "href" in seen and not seen["href"]:
                    raise fail(f"Empty href in tag a at byte offset {offset(pos)}")
                if name == "a" and "a" in stack:
                    raise fail(f"Nested links are not allowed at byte offset {offset(pos)}")
                stack.append(name)
            pos = match.end()
        elif char == "&":
            match = _ENTITY.match(text, pos)
            if match is None:
                raise fail(f"Character entity expected at byte offset {offset(pos)}")
            named, decimal, hexa = match.groups()
            if named:
                out.append(NAMED_ENTITIES[named])
            else:
                code = int(decimal) if decimal else int(hexa, 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    raise fail(f"Invalid character entity at byte offset {offset(pos)}")
                out.append(chr(code))
            pos = match.end()
        else:
            out.append(char)
            pos += 1
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


@dataclass
class Recorded:
    """One request the stand-in received and how it answered."""

    method: str
    params: dict[str, Any]
    status: int
    response: dict[str, Any]
    at: float
    injected: bool = False

    @property
    def ok(self) -> bool:
        """Whether the answer was a success."""
        return self.status == 200


@dataclass
class _Fault:
    status: int
    retry_after: int
    remaining: int
    description: str


@dataclass
class SentMessage:
    """A message in a chat as the stand-in knows it (sent by the bot or pushed by a test)."""

    chat_id: int
    message_id: int
    text: str
    html: str | None
    reply_markup: dict[str, Any] | None
    from_bot: bool
    at: float
    payload: dict[str, Any] = field(default_factory=dict)


class Spec:
    """The Bot API description from api.json: methods and types with their fields."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self.version: str = data.get("version", "")
        self.methods: dict[str, dict[str, Any]] = data["methods"]
        self.types: dict[str, dict[str, Any]] = data["types"]
        self._by_lower = {name.lower(): name for name in self.methods}

    def method(self, name: str) -> dict[str, Any] | None:
        """The method description; Telegram matches method names case-insensitively."""
        real = self._by_lower.get(name.lower())
        return self.methods[real] if real else None

    def validate_params(self, method: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """Check and decode the parameters of a call; returns them with JSON values decoded."""
        fields = {f["name"]: f for f in method.get("fields", [])}
        decoded: dict[str, Any] = {}
        for name, value in params.items():
            spec = fields.get(name)
            if spec is None:
                raise bad_request(f"unknown parameter '{name}' for method {method['name']}")
            decoded[name] = self._value(
                spec["types"], value, name, from_form=isinstance(value, str)
            )
        for name, spec in fields.items():
            if spec["required"] and name not in decoded:
                raise bad_request(f"parameter '{name}' is required for method {method['name']}")
        return decoded

    def _value(self, types: list[str], value: Any, where: str, *, from_form: bool) -> Any:
        errors: list[ApiError] = []
        for kind in types:
            try:
                return self._typed(kind, value, where, from_form=from_form)
            except ApiError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        # Several candidate types: report the most specific problem (an unknown field, say).
        specific = [e for e in errors if "must be of type" not in e.description]
        raise specific[0] if specific else bad_request(f"invalid value of '{where}': {value!r}")

    def _typed(self, kind: str, value: Any, where: str, *, from_form: bool) -> Any:
        invalid = bad_request(f"field '{where}' must be of type {kind}")
        if kind == "String":
            if from_form and isinstance(value, str):
                return value
            if isinstance(value, str):
                return value
            if isinstance(value, int | float) and not isinstance(value, bool):
                return str(value)
            raise invalid
        if from_form and isinstance(value, str):
            if kind == "Integer":
                try:
                    return int(value)
                except ValueError:
                    raise invalid from None
            if kind == "Float":
                try:
                    return float(value)
                except ValueError:
                    raise invalid from None
            if kind == "Boolean":
                if value.lower() in ("true", "1"):
                    return True
                if value.lower() in ("false", "0"):
                    return False
                raise invalid
            if kind == "InputFile":
                return value
            try:
                value = json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {where} JSON object") from None
        if kind == "Integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise invalid
            return value
        if kind == "Float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid
            return value
        if kind == "Boolean":
            if not isinstance(value, bool):
                raise invalid
            return value
        if kind.startswith("Array of "):
            if not isinstance(value, list):
                raise invalid
            inner = kind.removeprefix("Array of ")
            return [
                self._typed(inner, item, f"{where}[{i}]", from_form=False)
                for i, item in enumerate(value)
            ]
        if kind == "InputFile":
            return value
        return self._object(kind, value, where)

    def _object(self, kind: str, value: Any, where: str) -> Any:
        spec = self.types.get(kind)
        if spec is None:
            raise bad_request(f"unsupported type {kind} in '{where}'")
        if not isinstance(value, dict):
            raise bad_request(f"field '{where}' must be a JSON object of type {kind}")
        if "subtypes" in spec:
            problems = []
            for sub in spec["subtypes"]:
                try:
                    return self._object(sub, value, where)
                except ApiError as exc:
                    problems.append(exc.description)
            raise bad_request(f"'{where}' matches no kind of {kind}")
        fields = {f["name"]: f for f in spec.get("fields", [])}
        for name in value:
            if name not in fields:
                raise bad_request(f"unknown field '{name}' in '{where}' of type {kind}")
        for name, fspec in fields.items():
            if fspec["required"] and name not in value:
                raise bad_request(f"field '{name}' is required in '{where}' of type {kind}")
            if name in value:
                self._typed_any(fspec, value[name], f"{where}.{name}")
        # A subtype says which discriminator value it takes: "Scope type, must be chat".
        for name, fspec in fields.items():
            described = fspec.get("description", "")
            if isinstance(described, list):
                described = " ".join(described)
            match = re.search(r"must be (?:\*)?([a-z_]+)", described)
            if name == "type" and match and value.get("type") != match.group(1):
                raise bad_request(f"'{where}.type' must be {match.group(1)}")
        return value

    def _typed_any(self, fspec: dict[str, Any], value: Any, where: str) -> Any:
        return self._value(fspec["types"], value, where, from_form=False)


class BotApiStandIn:
    """The stand-in server. Thread-safe; start() / stop() or use it as a context manager."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        spec: Spec | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_username: str = "clusterbot_test_bot",
        latency: float = 0.0,
    ) -> None:
        self.token = token
        self.spec = spec or Spec()
        self.host = host
        self.port = port
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        # Added to every answer, to mimic network round trips in benchmarks.
        self.latency = latency
        self.requests: list[Recorded] = []
        self.messages: dict[int, list[SentMessage]] = {}
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.webhook: dict[str, Any] = {}
        self.pushed_at: dict[int, float] = {}
        # When the bot first sent a message to each chat (for latency measurements).
        self.first_reply_at: dict[int, float] = {}
        self._cond = threading.Condition()
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1000
        self._next_message_id: dict[int, int] = {}
        self._callbacks: dict[str, bool] = {}
        self._next_callback = 1
        self._faults: dict[str, list[_Fault]] = {}
        # Chats that refuse the bot's messages: blocked by their user (403), or a group
        # upgraded to a supergroup (400 with migrate_to_chat_id).
        self.blocked: set[int] = set()
        self.migrated: dict[int, int] = {}
        # Methods whose calls wait unanswered (see hold()); calls caught by a hold that ended
        # with drop=True are never answered or recorded (the bot may be gone by then).
        self._held: dict[str, int] = {}
        self._dropped: set[tuple[str, int]] = set()
        self._hold_generation = 0
        # Calls waiting in a hold right now, per method.
        self.waiting: dict[str, int] = {}
        self._poll_generation = 0
        # getUpdates calls begun (recorded requests appear only once they are answered).
        self.polls_started = 0
        self._chats: dict[int, dict[str, Any]] = {}
        self._server: _AsyncServer | None = None
        self._webhook_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> BotApiStandIn:
        """Start serving in a background thread."""
        self._server = _AsyncServer(self)
        self.port = self._server.start(self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving and release long polls."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._server is not None:
            self._server.stop()
        if self._webhook_thread is not None:
            self._webhook_thread.join(5)

    def __enter__(self) -> BotApiStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The value for telegram.base_url."""
        return f"http://{self.host}:{self.port}/bot"

    # -- what tests push ------------------------------------------------------------------

    def user(self, user_id: int, language_code: str | None = "en", username: str | None = None):
        """A Telegram User object for a human."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        if language_code:
            user["language_code"] = language_code
        if username:
            user["username"] = username
        return user

    def chat(self, chat_id: int, chat_type: str | None = None) -> dict[str, Any]:
        """A Chat object; negative ids are groups unless said otherwise."""
        if chat_id in self._chats and chat_type is None:
            return self._chats[chat_id]
        if chat_type is None:
            chat_type = "private" if chat_id > 0 else "supergroup"
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = f"User{chat_id}"
        else:
            chat["title"] = f"Group {chat_id}"
        self._chats[chat_id] = chat
        return chat

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue a raw update (without update_id); returns its update_id."""
        with self._cond:
            update_id = self._next_update_id
            self._next_update_id += 1
            self._updates.append({"update_id": update_id, **update})
            self.pushed_at[update_id] = time.monotonic()
            self._cond.notify_all()
        return update_id

    def push_message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str | None = None,
        language_code: str | None = "en",
        username: str | None = None,
        reply_to: SentMessage | None = None,
    ) -> int:
        """A user writes `text` in a chat (a private chat with the user by default)."""
        user_id = chat_id if user_id is None else user_id
        with self._cond:
            message_id = self._new_message_id(chat_id)
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": self.chat(chat_id, chat_type),
            "from": self.user(user_id, language_code, username),
            "text": text,
        }
        command = _BOT_COMMAND.match(text)
        if command:
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": command.end()}]
        if reply_to is not None:
            message["reply_to_message"] = reply_to.payload
        with self._cond:
            self.messages.setdefault(chat_id, []).append(
                SentMessage(chat_id, message_id, text, None, None, False, time.monotonic(), message)
            )
        return self.push_update({"message": message})

    def push_callback(
        self,
        message: SentMessage,
        data: str,
        *,
        user_id: int | None = None,
        language_code: str | None = "en",
    ) -> tuple[int, str]:
        """A user presses an inline button of `message`; returns (update_id, query id)."""
        user_id = message.chat_id if user_id is None else user_id
        with self._cond:
            query_id = str(9_000_000 + self._next_callback)
            self._next_callback += 1
            self._callbacks[query_id] = False
        query = {
            "id": query_id,
            "from": self.user(user_id, language_code),
            "message": message.payload,
            "chat_instance": str(message.chat_id),
            "data": data,
        }
        return self.push_update({"callback_query": query}), query_id

    def press(self, message: SentMessage, label_or_data: str, **kwargs: Any) -> tuple[int, str]:
        """Press the button of `message` whose label or callback_data is `label_or_data`."""
        for row in (message.reply_markup or {}).get("inline_keyboard", []):
            for button in row:
                if label_or_data in (button.get("text"), button.get("callback_data")):
                    return self.push_callback(message, button["callback_data"], **kwargs)
        raise AssertionError(f"no button {label_or_data!r} in message {message.message_id}")

    # -- faults ---------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        count: int = 1,
        *,
        status: int = 429,
        retry_after: int = 1,
        description: str | None = None,
    ) -> None:
        """Answer the next `count` calls of `method` with an error (429 carries retry_after)."""
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after}",
                502: "Bad Gateway",
                500: "Internal Server Error",
                503: "Service Unavailable",
            }.get(status, "Error")
        with self._cond:
            self._faults.setdefault(method.lower(), []).append(
                _Fault(status, retry_after, count, description)
            )

    @contextmanager
    def hold(self, method: str, *, drop: bool = False) -> Iterator[None]:
        """Leave every `method` call unanswered while the block runs, like a Telegram that
        stalls; then answer them normally, or (drop=True) never, as for a killed client."""
        key = method.lower()
        with self._cond:
            self._hold_generation += 1
            generation = self._hold_generation
            self._held[key] = generation
        try:
            yield
        finally:
            with self._cond:
                if drop:
                    self._dropped.add((key, generation))
                self._held.pop(key, None)
                self._cond.notify_all()

    def wait_held(self, method: str, count: int = 1, timeout: float = 10.0) -> None:
        """Block until `count` calls of `method` wait in a hold."""
        self.wait_until(lambda: self.waiting.get(method.lower(), 0) >= count, timeout)

    async def _wait_if_held(self, method: str) -> bool:
        """In the server: wait while `method` is held; False when the call must be dropped."""
        key = method.lower()
        with self._cond:
            generation = self._held.get(key)
            if generation is None:
                return True
            self.waiting[key] = self.waiting.get(key, 0) + 1
        try:
            while not self._stopping.is_set():
                with self._cond:
                    if self._held.get(key) != generation:
                        return (key, generation) not in self._dropped
                await asyncio.sleep(0.01)
            return False
        finally:
            with self._cond:
                self.waiting[key] -= 1

    def _refuses(self, name: str, params: dict[str, Any]) -> bool:
        chat_id = int(params.get("chat_id") or 0) if name == "sendMessage" else 0
        return chat_id in self.blocked or chat_id in self.migrated

    def _refuse_chat(self, name: str, params: dict[str, Any]) -> None:
        """Raise the refusal of a blocked or migrated chat."""
        if name != "sendMessage":
            return
        chat_id = int(params.get("chat_id") or 0)
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if chat_id in self.migrated:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self.migrated[chat_id]},
            )

    def _take_fault(self, method: str) -> _Fault | None:
        faults = self._faults.get(method.lower())
        while faults:
            fault = faults[0]
            if fault.remaining > 0:
                fault.remaining -= 1
                return fault
            faults.pop(0)
        return None

    # -- what tests read ------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Recorded]:
        """Recorded requests, optionally of one method."""
        with self._cond:
            return [r for r in self.requests if method is None or r.method == method]

    def rejected(self) -> list[Recorded]:
        """Requests the stand-in refused on their merits (not injected faults)."""
        with self._cond:
            # 409 Conflict is how Telegram ends an older long poll: not a faulty request.
            return [r for r in self.requests if not r.ok and not r.injected and r.status != 409]

    def bot_messages(self, chat_id: int) -> list[SentMessage]:
        """Messages the bot sent to `chat_id`, in order (with their current text)."""
        with self._cond:
            return [m for m in self.messages.get(chat_id, []) if m.from_bot]

    def pending_updates(self) -> int:
        """Updates not yet confirmed by the bot."""
        with self._cond:
            return len(self._updates)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until predicate() holds, or fail the test."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out waiting for the bot")
                self._cond.wait(min(remaining, 0.05))

    def wait_for_messages(self, chat_id: int, count: int, timeout: float = 10.0):
        """Wait until the bot sent at least `count` messages to chat_id; returns them."""
        self.wait_until(lambda: len(self._bot_messages_unlocked(chat_id)) >= count, timeout)
        return self.bot_messages(chat_id)

    def _bot_messages_unlocked(self, chat_id: int) -> list[SentMessage]:
        return [m for m in self.messages.get(chat_id, []) if m.from_bot]

    # -- serving --------------------------------------------------------------------------

    def _new_message_id(self, chat_id: int) -> int:
        next_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = next_id + 1
        return next_id

    def handle(self, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one request: (HTTP status, JSON body)."""
        prefix = "/bot"
        if not path.startswith(prefix) or "/" not in path[len(prefix) :]:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        token, method_name = path[len(prefix) :].split("/", 1)
        if token != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        method = self.spec.method(method_name)
        name = method["name"] if method else method_name
        injected = False
        try:
            if method is None:
                raise ApiError(404, "Not Found")
            with self._cond:
                fault = self._take_fault(name)
            if fault is not None:
                injected = True
                raise ApiError(
                    fault.status,
                    fault.description,
                    {"retry_after": fault.retry_after} if fault.status == 429 else None,
                )
            decoded = self.spec.validate_params(method, params)
            # A refusing chat is a scripted fault too, not a request refused on its merits.
            injected = self._refuses(name, decoded)
            self._refuse_chat(name, decoded)
            result = self._dispatch(name, decoded)
            status, body = 200, {"ok": True, "result": result}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A request shape the stand-in did not foresee: refuse it loudly.
            status = 400
            body = {"ok": False, "error_code": 400, "description": f"Bad Request: {exc!r}"}
        except ApiError as exc:
            status = exc.status
            body = {"ok": False, "error_code": exc.status, "description": exc.description}
            if exc.parameters:
                body["parameters"] = exc.parameters
        with self._cond:
            self.requests.append(Recorded(name, params, status, body, time.monotonic(), injected))
            self._cond.notify_all()
        return status, body

    def _dispatch(self, name: str, p: dict[str, Any]) -> Any:
        handler = getattr(self, f"_m_{name}", None)
        if handler is None:
            # A valid method the stand-in does not model: answer True like most setters.
            return True
        return handler(p)

    def _m_getMe(self, p: dict[str, Any]) -> Any:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Cluster bot",
            "username": self.bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _m_getChat(self, p: dict[str, Any]) -> Any:
        # Telegram answers only for chats the bot is in (or users who started it).
        chat_id = p["chat_id"]
        with self._cond:
            chat = self._chats.get(int(chat_id)) if str(chat_id).lstrip("-").isdigit() else None
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _m_getUpdates(self, p: dict[str, Any]) -> Any:
        offset = p.get("offset")
        limit = p.get("limit", 100)
        timeout = p.get("timeout", 0)
        if not 1 <= limit <= 100:
            limit = 100
        deadline = time.monotonic() + max(0, min(timeout, 50))
        with self._cond:
            if self.webhook.get("url"):
                raise ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            # A newer getUpdates request terminates an older one, as on Telegram.
            self.polls_started += 1
            self._poll_generation += 1
            generation = self._poll_generation
            self._cond.notify_all()
            if offset is not None and offset > 0:
                # Updates below the offset are confirmed: Telegram forgets them.
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            elif offset is not None and offset < 0:
                self._updates = self._updates[offset:]
            while True:
                if generation != self._poll_generation:
                    raise ApiError(409, "Conflict: terminated by other getUpdates request")
                if self._updates or self._stopping.is_set():
                    return self._updates[:limit]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)

    def _m_setWebhook(self, p: dict[str, Any]) -> Any:
        with self._cond:
            if p.get("drop_pending_updates"):
                self._updates.clear()
            self.webhook = {"url": p["url"], "secret_token": p.get("secret_token", "")}
            if p["url"] and (self._webhook_thread is None or not self._webhook_thread.is_alive()):
                self._webhook_thread = threading.Thread(
                    target=self._deliver_webhook, name="standin-webhook", daemon=True
                )
                self._webhook_thread.start()
            self._cond.notify_all()
        return True

    def _m_deleteWebhook(self, p: dict[str, Any]) -> Any:
        with self._cond:
            if p.get("drop_pending_updates"):
                self._updates.clear()
            self.webhook = {}
            self._cond.notify_all()
        return True

    def _m_getWebhookInfo(self, p: dict[str, Any]) -> Any:
        with self._cond:
            return {
                "url": self.webhook.get("url", ""),
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }

    def _deliver_webhook(self) -> None:
        # Telegram POSTs each update and retries until the bot answers 2xx.
        while not self._stopping.is_set():
            with self._cond:
                url = self.webhook.get("url")
                if not url:
                    return
                if not self._updates:
                    self._cond.wait(0.1)
                    continue
                update = self._updates[0]
                secret = self.webhook.get("secret_token", "")
            request = urllib.request.Request(url, data=json.dumps(update).encode(), method="POST")
            request.add_header("Content-Type", "application/json")
            if secret:
                request.add_header("X-Telegram-Bot-Api-Secret-Token", secret)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    delivered = 200 <= response.status < 300
            except (urllib.error.URLError, OSError, TimeoutError):
                delivered = False
            with self._cond:
                if delivered and self._updates and self._updates[0] is update:
                    self._updates.pop(0)
                    self._cond.notify_all()
            if not delivered:
                time.sleep(0.2)

    def _check_commands(self, p: dict[str, Any]) -> tuple[str, str]:
        scope = p.get("scope") or {"type": "default"}
        key = json.dumps(scope, sort_keys=True)
        lang = p.get("language_code", "")
        if lang and not re.fullmatch(r"[a-z]{2}", lang):
            raise bad_request("invalid language code specified")
        return key, lang

    def _m_setMyCommands(self, p: dict[str, Any]) -> Any:
        key, lang = self._check_commands(p)
        commands = p["commands"]
        if len(commands) > 100:
            raise bad_request("too many commands")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command["command"]):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(command["description"]) <= 256:
                raise bad_request("command description is empty or too long")
        with self._cond:
            self.commands[(key, lang)] = commands
        return True

    def _m_deleteMyCommands(self, p: dict[str, Any]) -> Any:
        key, lang = self._check_commands(p)
        with self._cond:
            self.commands.pop((key, lang), None)
        return True

    def _m_getMyCommands(self, p: dict[str, Any]) -> Any:
        key, lang = self._check_commands(p)
        with self._cond:
            return self.commands.get((key, lang), [])

    def _chat_id(self, value: Any) -> int:
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad_request("chat not found") from None
        return int(value)

    def _text(self, p: dict[str, Any], key: str = "text", limit: int = MAX_TEXT) -> tuple[str, str]:
        raw = p.get(key)
        if raw is None:
            raise bad_request("message text is empty")
        mode = p.get("parse_mode")
        if mode is not None and mode.lower() == "html":
            plain = parse_html(raw)
        elif mode is None or mode == "":
            plain = raw
        else:
            # The stand-in checks HTML only; the bot is expected to use nothing else.
            raise bad_request(f"unsupported parse_mode {mode!r} in the stand-in")
        if not plain.strip():
            raise bad_request("message text is empty")
        if utf16_len(plain) > limit:
            raise bad_request("message is too long")
        return plain, raw

    def _markup(self, p: dict[str, Any]) -> dict[str, Any] | None:
        markup = p.get("reply_markup")
        if markup is None:
            return None
        for row in markup.get("inline_keyboard", []) or []:
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA:
                    raise bad_request("BUTTON_DATA_INVALID")
                if not button.get("text"):
                    raise bad_request("text buttons are unallowed in the inline keyboard")
        return markup

    def _message_payload(self, sent: SentMessage) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "message_id": sent.message_id,
            "date": int(time.time()),
            "chat": self.chat(sent.chat_id),
            "from": {
                "id": self.bot_id,
                "is_bot": True,
                "first_name": "Cluster bot",
                "username": self.bot_username,
            },
            "text": sent.text,
        }
        if sent.reply_markup and sent.reply_markup.get("inline_keyboard"):
            payload["reply_markup"] = sent.reply_markup
        return payload

    def _m_sendMessage(self, p: dict[str, Any]) -> Any:
        chat_id = self._chat_id(p["chat_id"])
        plain, raw = self._text(p)
        markup = self._markup(p)
        with self._cond:
            if chat_id not in self._chats and chat_id < 0:
                raise bad_request("chat not found")
            message_id = self._new_message_id(chat_id)
            sent = SentMessage(chat_id, message_id, plain, raw, markup, True, time.monotonic())
            sent.payload = self._message_payload(sent)
            reply = p.get("reply_parameters")
            if reply is not None:
                known = {m.message_id for m in self.messages.get(chat_id, [])}
                if reply["message_id"] not in known and not reply.get(
                    "allow_sending_without_reply"
                ):
                    raise bad_request("message to be replied not found")
            self.messages.setdefault(chat_id, []).append(sent)
            self.first_reply_at.setdefault(chat_id, sent.at)
            self._cond.notify_all()
        return sent.payload

    def _find(self, p: dict[str, Any]) -> SentMessage:
        if "inline_message_id" in p:
            raise bad_request("the stand-in does not model inline messages")
        if "chat_id" not in p or "message_id" not in p:
            raise bad_request("chat_id and message_id are required")
        chat_id = self._chat_id(p["chat_id"])
        for message in self.messages.get(chat_id, []):
            if message.message_id == p["message_id"]:
                if not message.from_bot:
                    raise bad_request("message can't be edited")
                return message
        raise bad_request("message to edit not found")

    def _m_editMessageText(self, p: dict[str, Any]) -> Any:
        plain, raw = self._text(p)
        markup = self._markup(p)
        with self._cond:
            message = self._find(p)
            if message.html == raw and message.reply_markup == markup:
                raise bad_request(
                    "message is not modified: specified new message content and reply markup "
                    "are exactly the same as a current content and reply markup of the message"
                )
            message.text, message.html, message.reply_markup = plain, raw, markup
            message.payload = self._message_payload(message)
            self._cond.notify_all()
            return message.payload

    def _m_editMessageReplyMarkup(self, p: dict[str, Any]) -> Any:
        markup = self._markup(p)
        with self._cond:
            message = self._find(p)
            if message.reply_markup == markup or (not markup and not message.reply_markup):
                raise bad_request(
                    "message is not modified: specified new message content and reply markup "
                    "are exactly the same as a current content and reply markup of the message"
                )
            message.reply_markup = markup
            message.payload = self._message_payload(message)
            self._cond.notify_all()
            return message.payload

    def _m_answerCallbackQuery(self, p: dict[str, Any]) -> Any:
        if len(p.get("text", "")) > MAX_CALLBACK_ANSWER:
            raise bad_request("MESSAGE_TOO_LONG")
        with self._cond:
            answered = self._callbacks.get(p["callback_query_id"])
            if answered is None or answered:
                raise bad_request(
                    "query is too old and response timeout expired or query ID is invalid"
                )
            self._callbacks[p["callback_query_id"]] = True
        return True

    def _m_sendChatAction(self, p: dict[str, Any]) -> Any:
        if p["action"] not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self._chat_id(p["chat_id"])
        return True

    def _m_close(self, p: dict[str, Any]) -> Any:
        return True

    def _m_logOut(self, p: dict[str, Any]) -> Any:
        return True


MAX_HEADER = 65536


def parse_body(query: str, ctype: str, body: bytes) -> dict[str, Any] | None:
    """Parameters from the query string and a JSON or form body; None if malformed."""
    params: dict[str, Any] = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    if not body:
        return params
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if ctype == "application/json":
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        params.update(data)
    elif ctype == "application/x-www-form-urlencoded":
        try:
            params.update(urllib.parse.parse_qsl(text, keep_blank_values=True, errors="strict"))
        except UnicodeDecodeError:
            return None
    else:
        return None
    return params


class _AsyncServer:
    """HTTP/1.1 with keep-alive on one asyncio loop in one thread.

    One thread for every connection (like Telegram's servers, it does not slow down when a
    client opens many connections); only long polls, which wait, run in worker threads.
    """

    def __init__(self, api: BotApiStandIn) -> None:
        self.api = api
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.base_events.Server | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name="standin", daemon=True)
        # Long polls wait in these (a killed bot's poll lingers until the next one ends it).
        self.pollers = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="standin-poll")

    def start(self, host: str, port: int) -> int:
        """Listen; returns the port."""
        future = asyncio.run_coroutine_threadsafe(self._listen(host, port), self.loop)
        self.thread.start()
        return future.result(10)

    async def _listen(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._connection, host, port, backlog=512)
        return int(self.server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Close the listener and stop the loop."""

        async def close() -> None:
            if self.server is not None:
                self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self.thread.is_alive():
            with suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()
        self.pollers.shutdown(wait=False, cancel_futures=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    return
                method, target, _version = parts
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                try:
                    body = await reader.readexactly(length) if length else b""
                except asyncio.IncompleteReadError:
                    # The client died mid-request (a SIGKILLed bot): nothing to answer.
                    return
                status, answer = await self._handle(method, target, headers, body)
                data = json.dumps(answer).encode()
                reason = "OK" if status == 200 else "Error"
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, OSError, asyncio.CancelledError):
            # Cancelled only when the stand-in stops.
            return
        finally:
            with suppress(Exception):
                writer.close()

    async def _handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        api = self.api
        url = urllib.parse.urlsplit(target)
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        params = parse_body(url.query, ctype, body)
        if params is None:
            answer = {"ok": False, "error_code": 400, "description": "Bad Request: invalid body"}
            with api._cond:
                api.requests.append(
                    Recorded(url.path.rsplit("/", 1)[-1], {}, 400, answer, time.monotonic())
                )
            return 400, answer
        if not await api._wait_if_held(url.path.rsplit("/", 1)[-1]):
            # Never answered: the client sees the connection close.
            raise ConnectionResetError("held call dropped")
        if url.path.lower().endswith("/getupdates") and str(params.get("timeout", "0")) != "0":
            # A long poll waits on a condition: keep it off the loop.
            result = await asyncio.get_running_loop().run_in_executor(
                self.pollers, api.handle, url.path, params
            )
        else:
            result = api.handle(url.path, params)
        if api.latency:
            await asyncio.sleep(api.latency)
        return result


@contextmanager
def running_standin(**kwargs: Any) -> Iterator[BotApiStandIn]:
    """A started stand-in, stopped afterwards."""
    api = BotApiStandIn(**kwargs).start()
    try:
        yield api
    finally:
        api.stop()
