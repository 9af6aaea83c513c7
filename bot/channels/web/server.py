"""The web channel's HTTP side (Starlette): the page, the widget, JSON posts and SSE.

Requests carry the anonymous session token in the `X-Chat-Session` header, never in a URL
or a cookie: a cross-site page cannot make the browser send it, so together with the
Origin check and the JSON-only body it is the CSRF defence (a custom header also forces a
CORS preflight, which only allowed origins pass). The event stream is read with fetch()
for the same reason, instead of EventSource, which cannot send headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
import yaml
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from bot.channels.web import transcript
from bot.channels.web.limits import SlidingWindow
from bot.channels.web.render import (
    bot_message,
    field_prompts,
    form_field,
    known_links,
    new_token,
    plain,
    refused,
    session_id,
    user_message,
    valid_token,
)
from bot.dialogue.engine import Engine, Event
from bot.dialogue.form import FIELDS, LIMITS
from bot.jobs import session_idle_limit
from bot.settings import WEB_PATHS
from bot.storage import transaction

if TYPE_CHECKING:
    from bot.app import App
    from bot.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = transcript.CHANNEL
LANGUAGES = ("it", "en")
SESSION_HEADER = "X-Chat-Session"
# A post is one short JSON object; 64 KiB holds a 10 000-character message in any script.
MAX_BODY = 64 * 1024
MAX_TEXT = 10_000
# Requests per minute. The engine's own limit (limits.messages_per_minute) answers a fast
# typist politely; these refuse floods before they reach the engine.
POSTS_PER_SESSION = 40
POSTS_PER_ADDRESS = 120
NEW_SESSIONS_PER_ADDRESS = 20
STREAMS_PER_SESSION = 4
STREAMS_PER_ADDRESS = 60
# A comment line this often keeps proxies from closing an idle event stream.
HEARTBEAT_SECONDS = 15.0
WEB_PURGE_JOB = "web-transcripts"
TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TELEGRAM_MAX_BODY = 1024 * 1024
ASSETS = {
    "chat.js": "text/javascript; charset=utf-8",
    "chat.css": "text/css; charset=utf-8",
    "widget.js": "text/javascript; charset=utf-8",
}


class WebChannel:
    """The dialogue engine behind HTTP: one instance per process, sharing the app's database."""

    def __init__(
        self,
        settings: Settings,
        app: App,
        *,
        last_telegram_contact: Callable[[], datetime | None] | None = None,
    ) -> None:
        assert app.db is not None, "start the App first"
        self.settings = settings
        self.app = app
        self.db = app.db
        self.engine = Engine(app.db, app.kb, settings, clock=app.clock, on_commit=app.kick)
        self.links = known_links(app.kb, settings.secretariat.email)
        self.prompts = field_prompts(self.engine.texts, FIELDS, LANGUAGES)
        self.last_telegram_contact = last_telegram_contact
        self.posts_per_session = SlidingWindow(POSTS_PER_SESSION, 60.0)
        self.posts_per_address = SlidingWindow(POSTS_PER_ADDRESS, 60.0)
        self.new_sessions = SlidingWindow(NEW_SESSIONS_PER_ADDRESS, 60.0)
        self._streams: dict[str, set[asyncio.Queue[list[dict[str, Any]] | None]]] = {}
        self._streams_per_address: dict[str, int] = {}
        self._closed = False
        self._webhook: tuple[str, Any] | None = None
        self._assets: dict[str, bytes] = {}
        if app.worker is not None:
            # This process delivers the queue: the secretariat's answers to web applicants
            # are `web` deliveries (see transport.py).
            from bot.channels.web.transport import WebTransport

            app.worker.register(WebTransport(self))
        app.scheduler.add_job(
            self._purge,
            "interval",
            hours=6,
            id=WEB_PURGE_JOB,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=None,
            max_instances=1,
        )

    # ------------------------------------------------------------ the conversation

    def converse(self, token: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """One post: the engine's replies, stored in the transcript, as the page's JSON.

        One transaction holds the engine's turn and the transcript rows: the page's copy
        never disagrees with the conversation, and a message costs one commit.
        """
        with transaction(self.db):
            return self._converse(token, payload)

    def _converse(self, token: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        session = session_id(token)
        lang = payload.get("lang") if payload.get("lang") in LANGUAGES else None
        now = self.app.clock()
        last = transcript.last_bot_message(self.db, session)
        field = form_field(plain(last), self.prompts) if last else None
        shown: list[dict[str, Any]] = []
        if "button" in payload:
            event = self._event(session, "button", lang, button_id=str(payload["button"]))
            label = _button_label(last, event.button_id)
            if label is not None:
                shown.append(user_message(label))
        elif "command" in payload:
            event = self._event(session, "command", lang, command=str(payload["command"]))
        else:
            text = str(payload.get("text", ""))
            event = self._event(session, "text", lang, text=text)
            shown.append(user_message(text))
        mark = transcript.audit_mark(self.db)
        replies = self.engine.handle(event)
        answers = [bot_message(reply, self.links) for reply in replies]
        if transcript.erased_since(self.db, mark):
            # /forget erased the user's data: the page's copy goes too, and the
            # browser drops its token, so nothing links the next visit to this one.
            transcript.forget(self.db, session)
            return {"messages": _unstored(answers), "forgotten": True}
        stored = transcript.append(self.db, session, "user", shown, now)
        stored += transcript.append(self.db, session, "bot", answers, now)
        result: dict[str, Any] = {"messages": stored}
        error = refused(field, answers, self.prompts) if event.kind == "text" else None
        now_field = form_field(plain(answers[-1]), self.prompts) if answers else None
        if now_field is not None:
            result["field"] = now_field
            result["maxlength"] = LIMITS[now_field][1]
        if error is not None:
            result["error"] = error
        return result

    def _event(
        self,
        session: str,
        kind: str,
        lang: str | None,
        *,
        text: str = "",
        command: str = "",
        button_id: str = "",
    ) -> Event:
        return Event(
            channel=CHANNEL,
            user_id=session,
            kind=kind,  # type: ignore[arg-type]
            text=text,
            command=command,
            button_id=button_id,
            lang_hint=lang,
            chat_id=session,
        )

    def relay_title(self, lang: str, ref: str) -> str:
        """The heading of a relayed answer, as the other channels word it."""
        return self.engine.texts.get(lang, "answer_relay", ref=ref)

    # ------------------------------------------------------------ the secretariat's answers

    def push(self, session: str, messages: list[dict[str, Any]]) -> None:
        """Show stored messages on every open page of `session` now."""
        for queue in self._streams.get(session, ()):
            queue.put_nowait(messages)

    async def _purge(self) -> None:
        limit = session_idle_limit(self.settings)
        transcript.purge_idle(self.db, self.app.clock() - limit)

    def close(self) -> None:
        """End every open event stream (the server is stopping)."""
        self._closed = True
        for queues in self._streams.values():
            for queue in queues:
                queue.put_nowait(None)

    # ------------------------------------------------------------ Telegram's webhook

    def mount_webhook(self, path: str, receiver: Any) -> None:
        """Serve Telegram's webhook at `path` (`Webhook.serve_with`): one port for both.

        `receiver` is telegram_webhook's Receiver: check_secret, accept (journals the
        update and commits before the 200), health.
        """
        self._webhook = (path if path.startswith("/") else f"/{path}", receiver)

    async def _telegram_update(self, request: Request) -> Response:
        if self._webhook is None or request.url.path != self._webhook[0]:
            return _error(404, "not found")
        receiver = self._webhook[1]
        if not receiver.check_secret(request.headers.get(TELEGRAM_SECRET_HEADER)):
            return Response(status_code=403)
        body = await _read_body(request, TELEGRAM_MAX_BODY)
        if body is None:
            return Response(status_code=413)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return Response(status_code=400)
        if not isinstance(payload, dict) or not isinstance(payload.get("update_id"), int):
            return Response(status_code=400)
        # Journaled (committed) before Telegram gets its 200, as in telegram_webhook.
        receiver.accept([payload])
        return Response(status_code=200)

    # ------------------------------------------------------------ HTTP

    def asgi(self) -> Starlette:
        """The ASGI application: page, widget, API, health."""
        web = self.settings.web
        routes = [
            Route("/", self._root, methods=["GET"]),
            Route("/chat", self._page, methods=["GET"]),
            Route("/chat/{name:str}", self._asset, methods=["GET"]),
            Route("/widget.js", self._widget, methods=["GET"]),
            Route("/chat/api/message", self._post, methods=["POST"]),
            Route("/chat/api/events", self._events, methods=["GET"]),
            Route("/healthz", self._health, methods=["GET"]),
        ]
        hook = self._webhook_path()
        if hook is not None:
            routes.append(Route(hook, self._telegram_update, methods=["POST"]))
        middleware = [
            Middleware(
                CORSMiddleware,
                allow_origins=list(web.allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Content-Type", SESSION_HEADER, "Last-Event-ID"],
                max_age=600,
            )
        ]
        return Starlette(routes=routes, middleware=middleware)

    def _webhook_path(self) -> str | None:
        url = self.settings.telegram.webhook_url
        if not url:
            return None
        path = urlsplit(url).path or "/"
        # Settings refuse a webhook path that is one of the chat's own when [web] is on.
        return None if path in WEB_PATHS or path.startswith("/chat/") else path

    def _allowed_origin(self, request: Request, origin: str) -> bool:
        web = self.settings.web
        own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
        return origin.lower() in {own, web.public_origin, *web.allowed_origins}

    async def _root(self, request: Request) -> Response:
        return RedirectResponse("/chat", status_code=303)

    async def _page(self, request: Request) -> Response:
        lang = _page_language(request, self.settings.language)
        html = _page_template().render(lang=lang, texts=ui_texts(lang))
        headers = {
            # Everything the page loads is its own; nothing inline runs.
            "Content-Security-Policy": (
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors "
                + (" ".join(self.settings.web.allowed_origins) or "'none'")
            ),
            "Cache-Control": "no-store",
            **_COMMON_HEADERS,
        }
        return Response(html, media_type="text/html; charset=utf-8", headers=headers)

    async def _asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return _error(404, "not found")
        return self._asset_response(name)

    async def _widget(self, request: Request) -> Response:
        return self._asset_response("widget.js")

    def _asset_response(self, name: str) -> Response:
        body = self._assets.get(name)
        if body is None:
            config = {"email": self.settings.secretariat.email, "maxText": MAX_TEXT}
            body = self._assets[name] = asset_body(name, config)
        return _asset_response(name, body)

    async def _health(self, request: Request) -> Response:
        report: dict[str, Any] = {"status": "ok"}
        try:
            self.db.conn.execute("SELECT 1").fetchone()
            report["database"] = "ok"
            report["backlog"] = transcript.backlog(self.db)
        except Exception as exc:
            report.update(status="error", database=f"error: {type(exc).__name__}")
        contact = self.last_telegram_contact() if self.last_telegram_contact else None
        telegram: dict[str, Any] = {"last_contact": contact.isoformat() if contact else None}
        if self._webhook is not None:
            telegram["webhook"] = self._webhook[1].health()
        report["telegram"] = telegram
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    async def _post(self, request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        origin = request.headers.get("origin")
        if not origin or not self._allowed_origin(request, origin):
            return _error(403, "this page is not allowed to use the chat (Origin not allowed)")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "send JSON (Content-Type: application/json)")
        if not self.posts_per_address.allow(address):
            return _limited(self.posts_per_address.retry_after(address))
        body = await _read_body(request)
        if body is None:
            return _error(413, f"the request is too large (at most {MAX_BODY} bytes)")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the request is not valid JSON")
        problem = _check_payload(payload)
        if problem:
            return _error(400 if problem != "long" else 413, _PROBLEMS[problem])
        token = request.headers.get(SESSION_HEADER)
        fresh = not valid_token(token)
        if fresh:
            if not self.new_sessions.allow(address):
                return _limited(self.new_sessions.retry_after(address))
            token = new_token()
        assert token is not None
        if not self.posts_per_session.allow(token):
            return _limited(self.posts_per_session.retry_after(token))
        result = self.converse(token, payload)
        if fresh and not result.get("forgotten"):
            result["session"] = token
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    async def _events(self, request: Request) -> Response:
        token = request.headers.get(SESSION_HEADER)
        if not valid_token(token):
            return _error(401, f"no session: send the {SESSION_HEADER} header")
        assert token is not None
        origin = request.headers.get("origin")
        if origin and not self._allowed_origin(request, origin):
            return _error(403, "this page is not allowed to use the chat (Origin not allowed)")
        address = request.client.host if request.client else "unknown"
        session = session_id(token)
        if (
            len(self._streams.get(session, ())) >= STREAMS_PER_SESSION
            or self._streams_per_address.get(address, 0) >= STREAMS_PER_ADDRESS
        ):
            return _limited(30)
        try:
            after = max(0, int(request.headers.get("last-event-id") or 0))
        except ValueError:
            after = 0
        return StreamingResponse(
            self._stream(session, address, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, session: str, address: str, after: int) -> AsyncIterator[str]:
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()
        self._streams.setdefault(session, set()).add(queue)
        self._streams_per_address[address] = self._streams_per_address.get(address, 0) + 1
        try:
            # Answers that arrived while no page was open wait in the transcript.
            replay = transcript.history(self.db, session, after)
            for message in replay:
                yield _sse(message)
            yield f"event: ready\ndata: {json.dumps({'count': len(replay)})}\n\n"
            while not self._closed:
                try:
                    batch = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if batch is None:
                    break
                for message in batch:
                    yield _sse(message)
        finally:
            queues = self._streams.get(session)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._streams[session]
            left = self._streams_per_address.get(address, 1) - 1
            if left > 0:
                self._streams_per_address[address] = left
            else:
                self._streams_per_address.pop(address, None)


# ---------------------------------------------------------------- helpers

_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PROBLEMS = {
    "shape": 'send one JSON object: {"text": "..."}, {"button": "..."} or {"command": "start"}',
    "long": f"the message is too long (at most {MAX_TEXT} characters)",
}
_COMMANDS = frozenset({"start", "help", "faq", "contact", "status", "privacy", "forget"})


def _check_payload(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return "shape"
    kinds = [key for key in ("text", "button", "command") if key in payload]
    if len(kinds) != 1 or not isinstance(payload[kinds[0]], str):
        return "shape"
    if "lang" in payload and not isinstance(payload["lang"], str | None):
        return "shape"
    value = payload[kinds[0]]
    if kinds[0] == "text" and len(value) > MAX_TEXT:
        return "long"
    if kinds[0] == "button" and not 0 < len(value) <= 64:
        return "shape"
    if kinds[0] == "command" and value not in _COMMANDS:
        return "shape"
    return None


async def _read_body(request: Request, limit: int = MAX_BODY) -> bytes | None:
    """The body, or None when it exceeds `limit` bytes (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    except ClientDisconnect:
        return b""
    return b"".join(chunks)


def _button_label(last: Mapping[str, Any] | None, button_id: str) -> str | None:
    for button in (last or {}).get("buttons", ()):
        if isinstance(button, dict) and button.get("id") == button_id:
            return str(button.get("label", ""))
    return None


def _unstored(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": 0, "from": "bot", **message} for message in messages]


def _sse(message: Mapping[str, Any]) -> str:
    return f"id: {message['id']}\ndata: {json.dumps(message, ensure_ascii=False)}\n\n"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_COMMON_HEADERS)


def _limited(retry_after: int) -> JSONResponse:
    return JSONResponse(
        {"error": "too many requests: wait a minute and try again"},
        status_code=429,
        headers={"Retry-After": str(retry_after), **_COMMON_HEADERS},
    )


def _page_language(request: Request, default: str) -> str:
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return default


def last_telegram_update(db: Any) -> datetime | None:
    """When the bot last heard from Telegram: the newest journaled update."""
    from bot.storage import from_iso

    row = db.conn.execute("SELECT MAX(received_at) FROM updates").fetchone()
    return from_iso(row[0]) if row and row[0] else None


def web_dir() -> Path:
    """The folder of the page, script, style and interface texts."""
    from bot.resources import templates_dir

    return templates_dir() / "web"


@cache
def ui_texts(lang: str) -> dict[str, str]:
    """The page's own texts (labels, errors) in `lang`."""
    with (web_dir() / f"{lang}.yaml").open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return {str(key): str(value) for key, value in data.items()}


@cache
def _page_template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(web_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("chat.html.j2")


def asset_body(name: str, config: Mapping[str, Any]) -> bytes:
    """A static file; chat.js starts with the interface texts and `config` as data."""
    body = (web_dir() / name).read_bytes()
    if name == "chat.js":
        # The texts travel with the script, so the widget needs no extra request.
        data = {"texts": {lang: ui_texts(lang) for lang in LANGUAGES}, **config}
        prefix = "window.CLUSTERBOT_SETUP = " + json.dumps(data, ensure_ascii=True) + ";\n"
        body = prefix.replace("<", "\\u003c").encode("ascii") + body
    return body


def _asset_response(name: str, body: bytes) -> Response:
    return Response(
        body,
        media_type=ASSETS[name],
        headers={
            "Cache-Control": "public, max-age=300",
            # The widget is loaded by other sites' pages.
            "Cross-Origin-Resource-Policy": "cross-origin",
            **_COMMON_HEADERS,
        },
    )
