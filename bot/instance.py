"""One running bot per data directory: `clusterbot run` holds a lock file naming its PID.

Other commands (`chat`, `digest --send`, `deliveries retry --send`) on a held data
directory only queue, then wake the holder with SIGUSR1; nobody holding it, they deliver
themselves (claiming each delivery like any sender).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings import Settings

LOCK_NAME = "clusterbot.lock"
# Written by `run` once its database is open: the data directory has been used, so a
# database missing later was lost (deleted, a failed disk), not yet to be created.
MARKER_NAME = "clusterbot.instance"
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
    from bot.storage import StorageError, make_data_dir

    make_data_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(
            f"data_dir: cannot write {os.path.abspath(path)} ({exc.strerror or exc}); set "
            "data_dir to a folder this user may write"
        ) from None
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


def marker_path(settings: Settings) -> Path:
    """The file saying a bot has run on this data directory."""
    return settings.data_dir / MARKER_NAME


def marker_counter(settings: Settings) -> int:
    """The highest enquiry id the marker knows this data directory issued (0: none)."""
    try:
        data = json.loads(marker_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    value = data.get("last_enquiry_id") if isinstance(data, dict) else None
    return value if isinstance(value, int) and value > 0 else 0


def record_started(settings: Settings, db: sqlite_utils.Database) -> None:
    """Write the marker: the bot ran here, and the highest enquiry id issued so far.

    Written at start and at stop; never lowers the counter (a database replaced by an
    older one must not make references be issued twice).
    """
    (highest,) = db.conn.execute("SELECT coalesce(max(id), 0) FROM enquiries").fetchone()
    data = {
        "about": "clusterbot ran on this data directory; if its database goes missing, "
        "'run' refuses to start an empty one (docs/operations.md, 'Backup and restore')",
        "last_enquiry_id": max(int(highest), marker_counter(settings)),
    }
    path = marker_path(settings)
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=1) + "\n")
    os.replace(partial, path)


def continue_counter(settings: Settings, db: sqlite_utils.Database) -> int:
    """A new database continues the references the marker knows were issued; returns them."""
    from bot.storage import ENQUIRY_ID_FLOOR, set_meta, transaction

    counter = marker_counter(settings)
    if counter:
        with transaction(db):
            set_meta(db, ENQUIRY_ID_FLOOR, str(counter))
    return counter


def _ran_before(settings: Settings) -> str | None:
    """What shows that a bot ran on this data directory, or None."""
    if marker_path(settings).exists():
        return f"{marker_path(settings).name} is there"
    mail = settings.mail_dir
    if mail.is_dir() and any(mail.rglob("*.eml")):
        return f"its mail store {mail} holds mail"
    return None


def database_missing(settings: Settings, *, new_database: bool) -> str | None:
    """Why `run` must not start: the data directory was used but its database is gone.

    Starting anyway would create an empty database and issue the first reference again.
    """
    database = settings.database_path
    if new_database or database.exists():
        return None
    evidence = _ran_before(settings)
    if evidence is None:
        return None
    return (
        f"no database at {os.path.abspath(database)}, but the bot ran on "
        f"{os.path.abspath(settings.data_dir)} before ({evidence}): restore the backup "
        "(docs/operations.md, 'Backup and restore'), or pass --new-database to start "
        "with an empty one"
    )
