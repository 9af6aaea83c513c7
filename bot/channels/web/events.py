"""GET /chat/api/events: server-sent events, one stream per open page.

The page reads the stream with fetch() instead of EventSource, which cannot send the
session header (see guards.py). On (re)connect the stream replays the transcript after
`Last-Event-ID`, then carries whatever `push` sends to the session.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from bot.channels.web import transcript
from bot.channels.web.guards import (
    ORIGIN_REFUSED,
    SESSION_HEADER,
    allowed_origin,
    client_address,
    error,
    limited,
)
from bot.channels.web.render import session_id, valid_token
from bot.dialogue.session import stored_language

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings.web import WebSettings

# A comment line this often keeps proxies from closing an idle event stream.
HEARTBEAT_SECONDS = 15.0

_Batch = list[dict[str, Any]] | None


class EventStreams:
    """The open event streams of this process, by session."""

    def __init__(self, web: WebSettings, db: sqlite_utils.Database) -> None:
        self.web = web
        self.db = db
        self._streams: dict[str, set[asyncio.Queue[_Batch]]] = {}
        self._streams_per_address: dict[str, int] = {}
        self._closed = False

    def push(self, session: str, messages: list[dict[str, Any]]) -> None:
        """Show stored messages on every open page of `session` now."""
        for queue in self._streams.get(session, ()):
            queue.put_nowait(messages)

    def close(self) -> None:
        """End every open event stream (the server is stopping)."""
        self._closed = True
        for queues in self._streams.values():
            for queue in queues:
                queue.put_nowait(None)

    async def open(self, request: Request) -> Response:
        """The route: check session, origin and limits, then stream."""
        token = request.headers.get(SESSION_HEADER)
        if not valid_token(token):
            return error(401, f"no session: send the {SESSION_HEADER} header")
        assert token is not None
        origin = request.headers.get("origin")
        if origin and not allowed_origin(request, self.web, origin):
            return error(403, ORIGIN_REFUSED)
        address = client_address(request)
        session = session_id(token)
        if (
            len(self._streams.get(session, ())) >= self.web.streams_per_session
            or self._streams_per_address.get(address, 0) >= self.web.streams_per_address
        ):
            return limited(30)
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
        queue: asyncio.Queue[_Batch] = asyncio.Queue()
        self._streams.setdefault(session, set()).add(queue)
        self._streams_per_address[address] = self._streams_per_address.get(address, 0) + 1
        try:
            # Answers that arrived while no page was open wait in the transcript.
            replay = transcript.history(self.db, session, after)
            for message in replay:
                yield _sse(message)
            ready: dict[str, Any] = {"count": len(replay)}
            # The conversation's language: a reloaded page relabels itself to match.
            lang = stored_language(self.db, transcript.CHANNEL, session)
            if lang is not None:
                ready["lang"] = lang
            yield f"event: ready\ndata: {json.dumps(ready)}\n\n"
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


def _sse(message: Mapping[str, Any]) -> str:
    return f"id: {message['id']}\ndata: {json.dumps(message, ensure_ascii=False)}\n\n"
