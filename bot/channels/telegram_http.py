"""The channel's HTTP seam: python-telegram-bot's request interface on aiohttp.

PTB talks to the Bot API through a `telegram.request.BaseRequest` (its documented way to
use another HTTP library). Its default, HTTPXRequest, spends about four times aiohttp's CPU
per request, the largest cost of a reply (measured with bench/telegram.py), so the channel
gives PTB this one. Behaviour stays PTB's: the same timeouts (pool, connect, write, read),
`TimedOut` and `NetworkError` with the library's error as cause (bot.logs.network_cause
reads it), proxies from the environment (HTTPS_PROXY, NO_PROXY), certificates from
certifi.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

# PTB's own defaults for the main request object (seconds).
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0
POOL_TIMEOUT = 1.0
MEDIA_WRITE_TIMEOUT = 20.0


def _seconds(value: Any, default: float | None) -> float | None:
    # A number or None is the caller's choice; PTB's DEFAULT_NONE (or any other default
    # marker) means "this request object's own default".
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return default


class AiohttpRequest(BaseRequest):
    """A PTB request object on one aiohttp session (keep-alive, at most `pool_size` sockets)."""

    def __init__(
        self,
        pool_size: int = 1,
        *,
        read_timeout: float | None = READ_TIMEOUT,
        write_timeout: float | None = WRITE_TIMEOUT,
        connect_timeout: float | None = CONNECT_TIMEOUT,
        pool_timeout: float | None = POOL_TIMEOUT,
        media_write_timeout: float | None = MEDIA_WRITE_TIMEOUT,
    ) -> None:
        self.pool_size = pool_size
        self._read = read_timeout
        self._write = write_timeout
        self._connect = connect_timeout
        self._pool = pool_timeout
        self._media_write = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        # The proxy for each (scheme, host) reached, read from the environment once:
        # aiohttp's own trust_env reads it (and ~/.netrc) in a thread on every request.
        self._proxies: dict[tuple[str, str], str | None] = {}

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout (PTB adds it to long polling's own)."""
        return self._read

    async def initialize(self) -> None:
        """Open the session (inside the running event loop)."""
        if self._session is None or self._session.closed:
            context = ssl.create_default_context(cafile=certifi.where())
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.pool_size, ssl=context),
                # aiohttp would otherwise re-quote the URL; PTB's is ready as it is.
                requote_redirect_url=False,
            )

    async def shutdown(self) -> None:
        """Close the session and its connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def proxy_for(self, url: str) -> str | None:
        """The proxy the environment names for this URL (HTTPS_PROXY, NO_PROXY...)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        if key not in self._proxies:
            proxy = urllib.request.getproxies().get(parts.scheme)
            if proxy and urllib.request.proxy_bypass(parts.hostname or ""):
                proxy = None
            self._proxies[key] = proxy or None
        return self._proxies[key]

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """One request: (HTTP status, body); PTB turns the status into its errors."""
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        fields = request_data.json_parameters if request_data else None
        read = _seconds(read_timeout, self._read)
        write = _seconds(write_timeout, self._media_write if files else self._write)
        connect = _seconds(connect_timeout, self._connect)
        pool = _seconds(pool_timeout, self._pool)
        parts = (pool, connect, write, read)
        timeout = aiohttp.ClientTimeout(
            # aiohttp has no write timeout: the whole request is bounded by the sum instead.
            total=None if None in parts else sum(p for p in parts if p is not None),
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect,
            sock_read=read,
        )
        # Without files, the fields go as one JSON object of strings: Telegram reads it like
        # a form, and json.dumps costs a fraction of aiohttp's form encoding.
        body: aiohttp.FormData | bytes | None = None
        headers = {"User-Agent": self.USER_AGENT}
        if fields and not files:
            body = json.dumps(fields, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        if files:
            form = aiohttp.FormData()
            for name, value in (fields or {}).items():
                form.add_field(name, value)
            for name, (filename, content, mimetype) in files.items():
                form.add_field(name, content, filename=filename, content_type=mimetype)
            body = form
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=timeout,
                proxy=self.proxy_for(url),
            ) as response:
                return response.status, await response.read()
        except TimeoutError as err:
            raise TimedOut from err
        except aiohttp.ClientError as err:
            raise NetworkError(f"aiohttp.{type(err).__name__}: {err}") from err
