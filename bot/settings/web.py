"""[web]: the web chat's address, public URL and the origins allowed to embed it."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from bot.settings.section import Section


def _origin(value: str) -> str:
    match = re.fullmatch(r"(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?/?", value)
    if not match:
        raise ValueError(
            "must be an origin: scheme, host and optional port, no path, like "
            f"'https://www.example.org' or 'http://localhost:8000', got {value!r}"
        )
    return value.rstrip("/").lower()


# The web chat's own paths (bot/channels/web/server.py); a webhook beside it needs another.
WEB_PATHS = frozenset({"/", "/chat", "/widget.js", "/healthz"})


class WebSettings(Section):
    enabled: bool = False
    listen: str = "127.0.0.1"
    # 0 picks a free port (tests); the address actually bound is printed at start.
    port: int = Field(default=8081, ge=0, le=65535)
    public_url: str = ""
    allowed_origins: tuple[str, ...] = ()
    # Flood guards, per minute (posts, new sessions) or at once (event streams). The
    # engine's own limit (limits.messages_per_minute) answers a fast typist politely;
    # these refuse floods before they reach the engine.
    posts_per_session: int = Field(default=40, ge=1, le=10_000)
    posts_per_address: int = Field(default=120, ge=1, le=100_000)
    new_sessions_per_address: int = Field(default=20, ge=1, le=100_000)
    streams_per_session: int = Field(default=4, ge=1, le=100)
    streams_per_address: int = Field(default=60, ge=1, le=100_000)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if not value.strip() or any(char.isspace() for char in value):
            raise ValueError(f"must be a host name or IP address like '127.0.0.1', got {value!r}")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError(
                "must be empty or the http(s) address the page is reached at, like "
                f"'https://chat.example.org', got {value!r}"
            )
        return value.rstrip("/")

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_origin(item) for item in value)

    @property
    def public_origin(self) -> str | None:
        """The origin (scheme://host[:port]) of public_url, if set."""
        if not self.public_url:
            return None
        scheme, _, rest = self.public_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}".lower()
