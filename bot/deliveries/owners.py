"""Who holds a claim on a delivery: owner tokens, and whether their process is gone."""

from __future__ import annotations

import os
import secrets
import socket

_HOST = socket.gethostname()
# Workers alive in this process, by owner token: a claim by another token of this process
# (an earlier App, since closed) is as gone as a claim by a dead process.
_LIVE_OWNERS: set[str] = set()


def new_owner() -> str:
    """A claim owner: host, process id and a random token."""
    return f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_alive(owner: str) -> None:
    """A worker of this process sends under `owner` from now on."""
    _LIVE_OWNERS.add(owner)


def owner_gone(owner: str) -> None:
    """The worker sending under `owner` stopped: its claims may be taken over at once."""
    _LIVE_OWNERS.discard(owner)


def is_dead_owner(owner: str) -> bool:
    """True when the claim's sender is known to be gone (only knowable on this host)."""
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in _LIVE_OWNERS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
