"""Logging for the long-running commands: collapsed repeats, and network errors with a cause."""

from __future__ import annotations

import logging
import re
import socket
import ssl
import sys
import time
from typing import TextIO

# A warning repeated within this window is counted, not printed; the count is printed with
# the next different line, or with the first repeat after the window.
COLLAPSE_WINDOW_SECONDS = 300.0
# Digits (times, ids, delays) do not make two warnings different for collapsing: the
# scheduler's "maximum number of running instances reached" names the next run time.
_DIGITS = re.compile(r"\d+")


class CollapsingHandler(logging.StreamHandler[TextIO]):
    """A stream handler that prints a run of identical warnings once, then a count.

    Lines below WARNING are collapsed too when logged with extra={"collapse": True} (a
    flood's "rate limited" line).
    """

    def __init__(
        self, stream: TextIO | None = None, window: float = COLLAPSE_WINDOW_SECONDS
    ) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        # Without a stream of its own it writes to whatever sys.stderr is at the time (a
        # test harness, or a redirect, may swap it after logging was set up).
        self._follow_stderr = stream is None
        self.window = window
        self._key: tuple[str, int, str] | None = None
        self._first: logging.LogRecord | None = None
        self._since = 0.0
        self._repeats = 0

    def _summary(self) -> logging.LogRecord | None:
        if not self._repeats or self._first is None:
            return None
        first = self._first
        times = "time" if self._repeats == 1 else "times"
        record = logging.makeLogRecord(
            {
                "name": first.name,
                "levelno": first.levelno,
                "levelname": first.levelname,
                "msg": "last message repeated %d more %s",
                "args": (self._repeats, times),
            }
        )
        self._repeats = 0
        return record

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)

    def handle(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and not getattr(record, "collapse", False):
            # A different line: the pending count first, so it follows what it counts.
            if self._repeats:
                summary = self._summary()
                if summary is not None:
                    super().handle(summary)
                self._key = None
            return super().handle(record)
        try:
            text = record.getMessage()
        except Exception:  # a bad format string: let the normal path report it
            return super().handle(record)
        key = (record.name, record.levelno, _DIGITS.sub("#", text))
        now = time.monotonic()
        if key == self._key and now - self._since < self.window:
            self._repeats += 1
            return True
        summary = self._summary()
        if summary is not None:
            super().handle(summary)
        self._key, self._first, self._since = key, record, now
        return super().handle(record)

    def flush(self) -> None:
        # Before the process ends, the pending count is not lost.
        summary = self._summary() if self._key is not None else None
        if summary is not None:
            self._key = None
            super().handle(summary)
        super().flush()


def setup_logging(level: str | int, fmt: str) -> None:
    """Log to stderr through a CollapsingHandler (replacing earlier root handlers)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, CollapsingHandler):
            root.removeHandler(handler)
    handler = CollapsingHandler()
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def network_cause(exc: BaseException) -> str:
    """Why a network request failed, in words an operator can act on (no URLs, no token).

    Walks the exception's causes: a DNS failure, a refused connection, a TLS problem, a
    proxy, a timeout; otherwise the innermost error's type and first line.
    """
    chain = _chain(exc)
    names = {type(item).__name__ for item in chain}
    for item in chain:
        if isinstance(item, socket.gaierror):
            return f"DNS lookup failed ({item.strerror or item})"
        if isinstance(item, ConnectionRefusedError):
            return "connection refused (nothing listens there, or a firewall)"
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({item.verify_message or item})"
        if isinstance(item, ssl.SSLError):
            return f"TLS handshake failed ({getattr(item, 'reason', None) or item})"
        if isinstance(item, ConnectionResetError):
            return "connection reset by the other side"
    if any("Proxy" in name for name in names):
        return "the proxy refused or failed (check HTTPS_PROXY / ALL_PROXY)"
    if any("Timeout" in name or "TimedOut" in name for name in names):
        return "timed out"
    innermost = chain[-1]
    text = str(innermost).splitlines()[0] if str(innermost) else ""
    # httpx names the URL in some messages; a Telegram URL carries the bot token.
    text = re.sub(r"https?://\S+", "<url>", text)
    name = type(innermost).__name__
    return f"{name}: {text}" if text and text != name else name
