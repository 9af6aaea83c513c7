"""SQLite storage: connect with durable pragmas and apply versioned migrations."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from bot.schema import migrations

BUSY_TIMEOUT_MS = 5000
DATABASE_NAME = "clusterbot.sqlite3"
# The data directory holds personal data: only the bot's own user may enter it or read it.
DIR_MODE = 0o700
FILE_MODE = 0o600

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """Store instants as ISO 8601 UTC text, so string order is time order."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    """Parse a stored ISO 8601 instant."""
    return datetime.fromisoformat(text)


def dumps(value: Any) -> str:
    """JSON for a TEXT column."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class StorageError(Exception):
    """The database cannot be used; the message names the file and what to do."""


class DatabaseFileLost(StorageError):
    """The database file was deleted or replaced while this process had it open."""


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return (found.st_dev, found.st_ino)


class Database(sqlite_utils.Database):
    """A sqlite_utils.Database that knows which file it opened, to notice it disappearing."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__(conn, execute_plugins=False)
        self.path = path
        self.identity = _identity(path)
        self.lost: str | None = None
        # Called once, with the one-line reason, when the file is found gone or replaced.
        self.lost_listeners: list[Callable[[str], None]] = []
        # Called after personal data of enquiries was erased, with their references:
        # copies kept outside the database (the embedded mail store) are erased there.
        self.erase_hooks: list[Callable[[list[str]], object]] = []
        # A COMMIT running in another thread (the Telegram channel's group commit, so the
        # event loop goes on during the fsync); every transaction() waits for it first.
        self._commit_in_flight: concurrent.futures.Future[Any] | None = None

    def commit_started(self, future: concurrent.futures.Future[Any]) -> None:
        """A COMMIT runs in another thread until `future` is done: transactions wait."""
        self._commit_in_flight = future

    def settle(self) -> None:
        """Wait until a COMMIT running in another thread has ended (whatever its outcome:
        that is for its committer to handle)."""
        future = self._commit_in_flight
        if future is not None:
            concurrent.futures.wait([future])
            self._commit_in_flight = None

    def verify_file(self) -> None:
        """Raise DatabaseFileLost if the file at `path` is no longer the one opened."""
        if self.lost is None:
            now = _identity(self.path)
            if now == self.identity:
                return
            what = "deleted" if now is None else "replaced by another file"
            self.lost = (
                f"{self.path} was {what} while the bot was running; stopping so that nothing "
                "more is written to a file that no longer exists (restore it from a backup, "
                "then start the bot again)"
            )
            for listener in list(self.lost_listeners):
                try:
                    listener(self.lost)
                except Exception:
                    log.exception("database-lost listener failed")
        raise DatabaseFileLost(self.lost)

    def erased(self, refs: list[str]) -> None:
        """Tell the erase hooks that these enquiries' personal data is gone."""
        for hook in list(self.erase_hooks):
            try:
                hook(refs)
            except Exception:
                log.exception("erase hook failed")


def _loose(path: Path, wanted: int) -> int | None:
    """The current permission bits if they allow more than `wanted`, else None."""
    try:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None
    return mode if mode & ~wanted else None


def _private_paths(data_dir: Path) -> Iterator[tuple[Path, int]]:
    """The data directory and the bot's files in it, each with the mode it should have.

    Only what the bot writes there (the database with its -wal/-shm, the mail store):
    another file an operator keeps in the folder is theirs to decide.
    """
    yield data_dir, DIR_MODE
    if not data_dir.is_dir():
        return
    for path in sorted(data_dir.glob(f"{DATABASE_NAME}*")):
        yield path, FILE_MODE
    mail = data_dir / "mail"
    if mail.is_dir():
        yield mail, DIR_MODE
        for path in sorted(mail.iterdir()):
            yield path, DIR_MODE if path.is_dir() else FILE_MODE


def loose_modes(data_dir: Path) -> list[str]:
    """Files and folders under data_dir that other users may read, one line each."""
    problems = []
    for path, wanted in _private_paths(data_dir):
        mode = _loose(path, wanted)
        if mode is not None and not path.is_symlink():
            problems.append(
                f"{path}: mode {mode:04o} lets other users read personal data; the bot sets "
                f"{wanted:04o} when it starts, or run: chmod {wanted:o} {path}"
            )
    return problems


def make_private(data_dir: Path) -> list[str]:
    """Create data_dir (0700) and tighten looser modes under it; returns what was fixed."""
    make_data_dir(data_dir)
    fixed = []
    for path, wanted in _private_paths(data_dir):
        mode = _loose(path, wanted)
        if mode is None or path.is_symlink():
            continue
        try:
            os.chmod(path, mode & wanted)
        except OSError as exc:
            raise StorageError(f"{path}: cannot make it private ({exc.strerror})") from None
        fixed.append(f"{path}: {mode:04o} -> {mode & wanted:04o}")
    return fixed


def make_data_dir(path: Path) -> None:
    """Create the data folder (0700), or a StorageError naming the setting and the path."""
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"data_dir: cannot create the folder {os.path.abspath(path)} "
            f"({exc.strerror or exc}); set data_dir to a folder this user may write"
        ) from None


def open_database(
    path: Path, *, create: bool = True, check_integrity: bool = True
) -> sqlite_utils.Database:
    """Open the database at `path`, with WAL and migrations applied.

    With create=False a missing file is a StorageError instead of a new empty database
    (read-only commands must not invent one). The file is created 0600 in a 0700 folder,
    checked (quick_check) and opened with secure_delete, so erased data leaves no trace
    in free pages. Every error names the file.
    """
    if not path.exists():
        if not create:
            raise StorageError(
                f"no database at {os.path.abspath(path)}: start the bot once, or pass "
                "--config with the settings file the bot runs with"
            )
        make_data_dir(path.parent)
        # SQLite gives the -wal and -shm files the database file's permissions.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the database ({exc})") from None
    db = Database(conn, path)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        # FULL: a confirmed enquiry survives a power cut, not only a process crash.
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        # Erased personal data is overwritten with zeros, not left in free pages; not left
        # to how this machine's SQLite happens to be built.
        db.execute("PRAGMA secure_delete = ON")
        if check_integrity:
            verdict = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
            if verdict != ["ok"]:
                raise StorageError(
                    f"{path}: the database is damaged ({verdict[0]}); restore the last backup "
                    "(docs/operations.md, 'Backup and restore')"
                )
        migrations.apply(db)
    except sqlite3.OperationalError as exc:
        conn.close()
        raise StorageError(f"{path}: cannot use the database ({exc})") from None
    except sqlite3.DatabaseError as exc:
        # "file is not a database", "database disk image is malformed": say which file.
        conn.close()
        raise StorageError(
            f"{path}: not a usable clusterbot database ({exc}); restore the last backup "
            "(docs/operations.md) or point data_dir elsewhere"
        ) from None
    except BaseException:
        conn.close()
        raise
    return db


@contextmanager
def savepoint(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """Inside a transaction: the writes of the block are undone if it raises.

    One fixed name serves every level, since SQLite's ROLLBACK TO and RELEASE act on the
    innermost savepoint of that name; sqlite-utils' atomic() would draw a random name from
    os.urandom each time, a system call on every handled message.
    """
    db.conn.execute("SAVEPOINT nested")
    try:
        yield db
    except BaseException:
        db.conn.execute("ROLLBACK TO nested")
        db.conn.execute("RELEASE nested")
        raise
    else:
        db.conn.execute("RELEASE nested")


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """All writes inside commit together or not at all.

    Each transaction first checks that the database file is still the one opened: writing
    to a deleted file would lose the data at the next restart and issue references twice.
    """
    if isinstance(db, Database):
        db.verify_file()
        # Before looking at in_transaction: a COMMIT still running elsewhere counts as over.
        db.settle()
    if db.conn.in_transaction:
        # Nested: a savepoint inside the caller's transaction.
        with savepoint(db):
            yield db
        return
    # IMMEDIATE takes the write lock up front, so a read-then-write transaction waits for
    # another process's writer (busy_timeout) instead of failing when it tries to upgrade.
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    else:
        try:
            db.conn.execute("COMMIT")
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise


# meta key: the highest enquiry id a lost database had issued (set by `run --new-database`
# from the data directory's marker), so references continue instead of starting again.
ENQUIRY_ID_FLOOR = "enquiry_id_floor"


def next_enquiry_id(db: sqlite_utils.Database) -> int:
    """The id (and so the reference number) of the next enquiry: never one issued before."""
    (highest,) = db.conn.execute("SELECT coalesce(max(id), 0) FROM enquiries").fetchone()
    floor = get_meta(db, ENQUIRY_ID_FLOOR)
    return max(int(highest), int(floor) if floor and floor.isdigit() else 0) + 1


def get_meta(db: sqlite_utils.Database, key: str) -> str | None:
    """A value from the meta table, or None."""
    found = db.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return str(found[0]) if found else None


def set_meta(db: sqlite_utils.Database, key: str, value: str) -> None:
    """Insert or replace a meta value (inside the caller's transaction)."""
    db.conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def record_audit(
    db: sqlite_utils.Database,
    event: str,
    *,
    actor: str,
    now: datetime,
    enquiry_id: int | None = None,
    ref: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one audit event; `detail` must never hold personal data."""
    db.conn.execute(
        "INSERT INTO audit (at, event, enquiry_id, ref, actor, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (to_iso(now), event, enquiry_id, ref, actor, dumps(dict(detail)) if detail else None),
    )
