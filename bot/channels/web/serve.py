"""Run the web channel's ASGI app with uvicorn inside the bot's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from bot.channels.web.server import WebChannel

# Open event streams are ended by the channel at stop; anything else gets this long.
GRACEFUL_SECONDS = 3


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers (the bot's command owns signals), saying when
    it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket first, so a busy port is a clear OSError, not an exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (socket.create_server leaves it 0), and without it every keep-alive response waits
    # ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


def address_of(sock: socket.socket) -> str:
    """http://host:port of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve_web(
    channel: WebChannel,
    stop: asyncio.Event,
    *,
    sock: socket.socket | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until `stop` is set; `ready(base_url)` is called once the port is listening."""
    web = channel.settings.web
    sock = sock if sock is not None else bind(web.listen, web.port)
    config = uvicorn.Config(
        channel.asgi(),
        log_config=None,
        # Client addresses are personal data: no access log.
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        # X-Forwarded-For from a reverse proxy on this machine gives the client's address
        # for the per-address limits (uvicorn trusts 127.0.0.1 by default).
        proxy_headers=True,
    )
    server = _EmbeddedServer(config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    stopping = asyncio.ensure_future(stop.wait())
    listening = asyncio.ensure_future(server.listening.wait())
    try:
        await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
        if server.started:
            # Answers queued while the bot was down go to the transcripts now.
            channel.app.kick()
            if ready is not None:
                ready(address_of(sock))
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        channel.close()
        server.should_exit = True
        stopping.cancel()
        listening.cancel()
        await asyncio.gather(serving, stopping, listening, return_exceptions=True)
        sock.close()
