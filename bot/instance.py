"""One running bot per data directory: `clusterbot run` holds a lock file naming its PID.

Other commands (`chat`, `digest --send`, `deliveries retry --send`) on a held data
directory only queue, then wake the holder with SIGUSR1; nobody holding it, they deliver
themselves (claiming each delivery like any sender).
"""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings

LOCK_NAME = "clusterbot.lock"
# The holder wakes its delivery worker on this signal.
WAKE_SIGNAL = signal.SIGUSR1


class InstanceLocked(Exception):
    """Another process holds the data directory."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"PID {pid}" if pid else "another process"
        super().__init__(
            f"another 'clusterbot run' ({who}) is already using {path.parent}; stop it "
            f"first, or give this one its own data_dir"
        )
        self.pid = pid


def lock_path(settings: Settings) -> Path:
    """The lock file of this data directory."""
    return settings.data_dir / LOCK_NAME


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class InstanceLock:
    """The data directory's lock, held until release() (or the process ends)."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        """Give the data directory up."""
        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(settings: Settings) -> InstanceLock:
    """Take the data directory for this process, or raise InstanceLocked naming the holder."""
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    handle = os.fdopen(fd, "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise InstanceLocked(path, _read_pid(path)) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return InstanceLock(path, handle)


def holder(settings: Settings) -> int | None:
    """The PID of the process holding the data directory (0 if unknown), or None if free."""
    path = lock_path(settings)
    if not path.exists():
        return None
    try:
        with path.open("r") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_pid(path) or 0
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def notify(settings: Settings) -> bool:
    """Wake the holder's delivery worker; False if nobody holds the data directory."""
    pid = holder(settings)
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, WAKE_SIGNAL)
    except OSError:
        return False
    return True
