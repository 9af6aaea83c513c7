"""SQLite storage: connect with durable pragmas and apply versioned migrations."""

from __future__ import annotations

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
from sqlite_utils.migrations import Migrations

BUSY_TIMEOUT_MS = 5000
DATABASE_NAME = "clusterbot.sqlite3"
# The data directory holds personal data: only the bot's own user may enter it or read it.
DIR_MODE = 0o700
FILE_MODE = 0o600

log = logging.getLogger(__name__)

migrations = Migrations("clusterbot")


@migrations(name="0001_initial")
def _initial(db: sqlite_utils.Database) -> None:
    # One conversation per (channel, user): language, form state and FAQ history as JSON.
    db.execute(
        """
        CREATE TABLE sessions (
            channel TEXT NOT NULL,
            user_id TEXT NOT NULL,
            lang TEXT,
            state TEXT NOT NULL DEFAULT '{}',
            updated_at TEXT NOT NULL,
            PRIMARY KEY (channel, user_id)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE enquiries (
            id INTEGER PRIMARY KEY,
            ref TEXT UNIQUE,
            channel TEXT NOT NULL,
            user_id TEXT,
            chat_id TEXT,
            username TEXT,
            lang TEXT NOT NULL,
            name TEXT,
            email TEXT,
            organisation TEXT,
            country TEXT,
            question TEXT,
            faq_history TEXT NOT NULL DEFAULT '[]',
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'answered', 'closed')),
            created_at TEXT NOT NULL,
            forwarded_at TEXT,
            answered_at TEXT,
            answered_by TEXT,
            answer TEXT,
            closed_at TEXT,
            closed_by TEXT,
            close_note TEXT,
            reminder_count INTEGER NOT NULL DEFAULT 0,
            last_reminder_at TEXT,
            admin_message_id INTEGER,
            erased_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX enquiries_status_created ON enquiries (status, created_at)")
    db.execute("CREATE INDEX enquiries_user ON enquiries (channel, user_id, created_at)")
    db.execute("CREATE INDEX enquiries_answered_at ON enquiries (answered_at)")
    db.execute("CREATE INDEX enquiries_closed_at ON enquiries (closed_at)")
    db.execute("CREATE INDEX enquiries_admin_message ON enquiries (admin_message_id)")
    # E-mails to send. `raw` is the complete RFC 5322 message, Message-ID included, so a
    # retry sends byte-identical mail.
    db.execute(
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            enquiry_id INTEGER REFERENCES enquiries(id),
            message_id TEXT NOT NULL UNIQUE,
            mail_from TEXT NOT NULL,
            rcpt_to TEXT NOT NULL,
            raw BLOB,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX outbox_due ON outbox (status, next_attempt_at)")
    db.execute("CREATE INDEX outbox_enquiry ON outbox (enquiry_id)")
    # Messages for chat channels (the admin chat post, relayed answers, failure reports),
    # delivered by the channel's own worker.
    db.execute(
        """
        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            kind TEXT NOT NULL,
            enquiry_id INTEGER REFERENCES enquiries(id),
            chat_id TEXT,
            text TEXT,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            sent_message_id INTEGER
        )
        """
    )
    db.execute("CREATE INDEX notifications_due ON notifications (channel, status, next_attempt_at)")
    # Who did what to which enquiry, and when. `detail` never holds personal data.
    db.execute(
        """
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            enquiry_id INTEGER,
            ref TEXT,
            actor TEXT NOT NULL,
            detail TEXT
        )
        """
    )
    db.execute("CREATE INDEX audit_enquiry ON audit (enquiry_id, at)")
    db.execute("CREATE INDEX audit_event_at ON audit (event, at)")
    # Telegram updates journaled before their offset is confirmed (crash safety).
    db.execute(
        """
        CREATE TABLE updates (
            update_id INTEGER PRIMARY KEY,
            payload TEXT NOT NULL,
            received_at TEXT NOT NULL,
            handled_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX updates_unhandled ON updates (handled_at, update_id)")
    # Small key/value facts, such as when the last digest ran.
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # FAQ look-ups, for /stats: hit rate and frequent fallback questions (no user ids).
    db.execute(
        """
        CREATE TABLE faq_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            lang TEXT NOT NULL,
            faq_id TEXT,
            score REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX faq_log_at ON faq_log (at)")


@migrations(name="0002_update_quarantine")
def _update_quarantine(db: sqlite_utils.Database) -> None:
    # An update that keeps failing is set aside: kept in the journal, reported, skipped.
    # `attempts` counts handling runs that began after a restart or ended in an error.
    db.execute("ALTER TABLE updates ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE updates ADD COLUMN quarantined_at TEXT")
    db.execute("ALTER TABLE updates ADD COLUMN last_error TEXT")


@migrations(name="0003_inbound_mail")
def _inbound_mail(db: sqlite_utils.Database) -> None:
    # Every e-mail read from the bot's mailbox (or imported), once: `message_id` makes the
    # pipeline idempotent. `raw` keeps the full original for the enquiry's history; it and
    # `sender`/`subject` are personal data, erased with the enquiry.
    db.execute(
        """
        CREATE TABLE inbound_mail (
            id INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            received_at TEXT NOT NULL,
            source TEXT NOT NULL,
            sender TEXT,
            subject TEXT,
            status TEXT NOT NULL CHECK (status IN
                ('answer', 'follow_up', 'bounce', 'auto_reply', 'refused', 'unmatched',
                 'ignored')),
            enquiry_id INTEGER REFERENCES enquiries(id),
            matched_by TEXT,
            reason TEXT,
            attachments INTEGER NOT NULL DEFAULT 0,
            answer TEXT,
            raw BLOB
        )
        """
    )
    db.execute("CREATE INDEX inbound_mail_enquiry ON inbound_mail (enquiry_id, received_at)")
    db.execute("CREATE INDEX inbound_mail_status ON inbound_mail (status, received_at)")
    # Where the IMAP reader stands in each folder: a restart resumes after `last_uid`, and a
    # new UIDVALIDITY (the folder was re-created) starts the folder over.
    db.execute(
        """
        CREATE TABLE inbox_cursor (
            folder TEXT PRIMARY KEY,
            uidvalidity INTEGER NOT NULL,
            last_uid INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )


@migrations(name="0004_web_transcripts")
def _web_transcripts(db: sqlite_utils.Database) -> None:
    # The web chat's conversation as the page shows it, so a reload (or a bot restart)
    # keeps it; `session` is the engine's user_id for channel "web" (a hash of the token).
    db.execute(
        """
        CREATE TABLE web_messages (
            id INTEGER PRIMARY KEY,
            session TEXT NOT NULL,
            at TEXT NOT NULL,
            sender TEXT NOT NULL,
            payload TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX web_messages_session ON web_messages (session, id)")


# Every outgoing message, whatever carries it (bot.deliveries). `idempotency_key` is stable
# across retries (the Message-ID for mail); a sender claims a row with a lease (owner and
# expiry) before sending it, so two senders never send it twice and a crashed sender's
# claim runs out.
DELIVERY_STATUSES = ("queued", "sending", "sent", "failed-temporary", "dead", "cancelled")


@migrations(name="0004_deliveries")
def _deliveries(db: sqlite_utils.Database) -> None:
    statuses = ", ".join(f"'{status}'" for status in DELIVERY_STATUSES)
    db.execute(
        f"""
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            transport TEXT NOT NULL,
            kind TEXT NOT NULL,
            enquiry_id INTEGER REFERENCES enquiries(id),
            sender TEXT,
            recipient TEXT,
            payload BLOB,
            idempotency_key TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ({statuses})),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            lease_owner TEXT,
            lease_until TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            sent_ref TEXT
        )
        """
    )
    db.execute("CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)")
    db.execute("CREATE INDEX deliveries_enquiry ON deliveries (enquiry_id)")
    # The mail queue moves over row by row, ids, Message-IDs and raw bytes unchanged: a
    # pending mail goes out byte-identical after the upgrade, a failed one stays dead.
    db.execute(
        """
        INSERT INTO deliveries (id, transport, kind, enquiry_id, sender, recipient, payload,
            idempotency_key, status, attempts, next_attempt_at, last_error, created_at, sent_at)
        SELECT id, 'smtp', kind, enquiry_id, mail_from, rcpt_to, raw, message_id,
            CASE status WHEN 'sent' THEN 'sent' WHEN 'failed' THEN 'dead'
                ELSE CASE WHEN attempts > 0 THEN 'failed-temporary' ELSE 'queued' END END,
            attempts, next_attempt_at, last_error, created_at, sent_at
        FROM outbox ORDER BY id
        """
    )
    db.execute("DROP TABLE outbox")


@migrations(name="0005_chat_deliveries")
def _chat_deliveries(db: sqlite_utils.Database) -> None:
    # The chat messages (Telegram posts, replies, relayed answers, failure reports; console
    # answers) join the one queue: transport = the channel, recipient = the chat, payload =
    # the text or the stored replies' JSON. A pending row's progress (pieces already sent,
    # kept in sent_message_id) stays in sent_ref, so nothing is sent twice.
    db.execute(
        """
        INSERT INTO deliveries (transport, kind, enquiry_id, recipient, payload,
            idempotency_key, status, attempts, next_attempt_at, last_error, created_at,
            sent_at, sent_ref)
        SELECT channel, kind, enquiry_id, chat_id, text, 'notification:' || id,
            CASE status WHEN 'sent' THEN 'sent' WHEN 'failed' THEN 'dead'
                WHEN 'skipped' THEN 'cancelled'
                ELSE CASE WHEN attempts > 0 THEN 'failed-temporary' ELSE 'queued' END END,
            attempts, next_attempt_at, last_error, created_at, sent_at,
            CAST(sent_message_id AS TEXT)
        FROM notifications ORDER BY id
        """
    )
    db.execute("DROP TABLE notifications")
    db.execute("CREATE INDEX deliveries_recipient ON deliveries (transport, recipient, status)")


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
