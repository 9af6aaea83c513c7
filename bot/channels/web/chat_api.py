"""POST /chat/api/message: a guarded chat post in, the conversation's JSON out."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.channels.web.guards import (
    MAX_BODY,
    ORIGIN_REFUSED,
    PROBLEMS,
    SESSION_HEADER,
    allowed_origin,
    check_payload,
    client_address,
    error,
    limited,
    read_body,
)
from bot.channels.web.limits import SlidingWindow
from bot.channels.web.render import new_token, valid_token

if TYPE_CHECKING:
    from bot.channels.web.conversation import Conversation
    from bot.settings.web import WebSettings

# The limits' window: [web] posts_per_session and the others count requests per minute.
LIMIT_WINDOW = 60.0


class ChatApi:
    """The message route: origin, type, size, shape and flood checks, then one turn."""

    def __init__(self, web: WebSettings, conversation: Conversation) -> None:
        self.web = web
        self.conversation = conversation
        self.posts_per_session = SlidingWindow(web.posts_per_session, LIMIT_WINDOW)
        self.posts_per_address = SlidingWindow(web.posts_per_address, LIMIT_WINDOW)
        self.new_sessions = SlidingWindow(web.new_sessions_per_address, LIMIT_WINDOW)

    async def post(self, request: Request) -> Response:
        """Answer one post; a new session's token comes back as `session`."""
        address = client_address(request)
        origin = request.headers.get("origin")
        if not origin or not allowed_origin(request, self.web, origin):
            return error(403, ORIGIN_REFUSED)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error(415, "send JSON (Content-Type: application/json)")
        if not self.posts_per_address.allow(address):
            return limited(self.posts_per_address.retry_after(address))
        body = await read_body(request)
        if body is None:
            return error(413, f"the request is too large (at most {MAX_BODY} bytes)")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return error(400, "the request is not valid JSON")
        problem = check_payload(payload)
        if problem:
            return error(400 if problem != "long" else 413, PROBLEMS[problem])
        token = request.headers.get(SESSION_HEADER)
        fresh = not valid_token(token)
        if fresh:
            if not self.new_sessions.allow(address):
                return limited(self.new_sessions.retry_after(address))
            token = new_token()
        assert token is not None
        if not self.posts_per_session.allow(token):
            return limited(self.posts_per_session.retry_after(token))
        result = self.conversation.converse(token, payload)
        if fresh and not result.get("forgotten"):
            result["session"] = token
        return JSONResponse(result, headers={"Cache-Control": "no-store"})
