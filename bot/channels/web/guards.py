"""What a chat request must pass before it reaches the engine, and the JSON refusals.

The session token travels in the `X-Chat-Session` header, never in a URL or a cookie: a
cross-site page cannot make the browser send it, so together with the Origin check and the
JSON-only body it is the CSRF defence (a custom header also forces a CORS preflight, which
only allowed origins pass).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from bot.settings.web import WebSettings

SESSION_HEADER = "X-Chat-Session"
# A post is one short JSON object; 64 KiB holds a 10 000-character message in any script.
MAX_BODY = 64 * 1024
MAX_TEXT = 10_000
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
ORIGIN_REFUSED = "this page is not allowed to use the chat (Origin not allowed)"
PROBLEMS = {
    "shape": 'send one JSON object: {"text": "..."}, {"button": "..."} or {"command": "start"}',
    "long": f"the message is too long (at most {MAX_TEXT} characters)",
}
_COMMANDS = frozenset({"start", "help", "faq", "contact", "status", "privacy", "forget"})


def allowed_origin(request: Request, web: WebSettings, origin: str) -> bool:
    """The page's own origin, the public one and the configured embedders may post."""
    own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
    return origin.lower() in {own, web.public_origin, *web.allowed_origins}


def client_address(request: Request) -> str:
    """The key of the per-address limits."""
    return request.client.host if request.client else "unknown"


def check_payload(payload: Any) -> str | None:
    """None for a valid post, else the key of its problem in PROBLEMS."""
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


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes | None:
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


def error(status: int, message: str) -> JSONResponse:
    """A refusal the page shows: {"error": message}."""
    return JSONResponse({"error": message}, status_code=status, headers=COMMON_HEADERS)


def limited(retry_after: int) -> JSONResponse:
    """429 with the seconds to wait."""
    return JSONResponse(
        {"error": "too many requests: wait a minute and try again"},
        status_code=429,
        headers={"Retry-After": str(retry_after), **COMMON_HEADERS},
    )
