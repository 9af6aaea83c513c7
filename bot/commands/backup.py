"""`clusterbot backup FILE`: a consistent copy of the database and the mail store, live."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from bot.commands.common import UserError, add_config_option, fail, settings_from_args

# Names inside the archive: extracting it into an empty data_dir restores the bot's data.
ARCHIVE_DATABASE = "clusterbot.sqlite3"
ARCHIVE_MAIL = "mail"


def add_parser(subparsers: Any) -> None:
    """Add `backup`."""
    parser = subparsers.add_parser(
        "backup",
        help="back up the database and the mail store to a tar file, while the bot runs",
        description=(
            "Write a tar archive (gzip-compressed when FILE ends in .gz or .tgz) holding a "
            "consistent copy of the database, taken with SQLite's online backup while the bot "
            "keeps writing, and the embedded mail store's .eml files. To restore, stop the "
            "bot and extract the archive into an empty data_dir (docs/operations.md)."
        ),
    )
    add_config_option(parser)
    parser.add_argument("file", metavar="FILE", help="the archive to write (replaced if present)")
    parser.set_defaults(func=run)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1024 / 1024:.1f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.0f} KiB"


def copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup of `source` into a new single-file database at `target`."""
    from bot.storage import BUSY_TIMEOUT_MS, FILE_MODE

    os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, FILE_MODE))
    # Read-only: a backup must never change the live database (nor create one).
    src = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        dst = sqlite3.connect(str(target))
        try:
            # One step (pages=-1): the copy is one read transaction, a consistent snapshot
            # that WAL lets the bot keep writing through. Copying in several steps would
            # restart at every write of a busy bot.
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode = DELETE")
            verdict = dst.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise UserError(f"{source}: the copy failed its integrity check ({verdict})")
        finally:
            dst.close()
    finally:
        src.close()


def write_backup(data_dir: Path, database: Path, file: Path) -> tuple[int, str]:
    """Write the archive; returns (number of stored mails, database size)."""
    mail_dir = data_dir / ARCHIVE_MAIL
    compressed = file.name.endswith((".gz", ".tgz"))
    work = Path(tempfile.mkdtemp(prefix=f".{file.name}.", dir=file.parent))
    try:
        copy = work / ARCHIVE_DATABASE
        _progress(f"copying the database {database} ({_size(database)})...")
        copy_database(database, copy)
        size = _size(copy)
        partial = work / "archive.tar"
        mails = 0
        with tarfile.open(partial, "w:gz") if compressed else tarfile.open(partial, "w") as archive:
            archive.add(copy, arcname=ARCHIVE_DATABASE)
            if mail_dir.is_dir():
                names = sorted(p.name for p in mail_dir.iterdir() if p.name.endswith(".eml"))
                if names:
                    _progress(f"adding {len(names)} stored mails from {mail_dir}...")
                for name in names:
                    # A mail erased meanwhile (/forget, retention) is simply not in the copy.
                    with contextlib.suppress(FileNotFoundError):
                        archive.add(mail_dir / name, arcname=f"{ARCHIVE_MAIL}/{name}")
                        mails += 1
        os.chmod(partial, 0o600)
        os.replace(partial, file)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return mails, size


def run(args: argparse.Namespace) -> int:
    """Back up; one line per step on stderr, exit 1 with one line on a problem."""
    try:
        settings = settings_from_args(args)
        database = settings.database_path
        if not database.exists():
            raise UserError(
                f"no database at {os.path.abspath(database)}: nothing to back up (check "
                "--config, or start the bot once)"
            )
        file = Path(args.file)
        if not file.parent.is_dir():
            raise UserError(f"{file.parent}: no such folder for the backup")
        from bot import instance

        pid = instance.holder(settings)
        if pid is not None:
            # Fine: the online backup is a consistent snapshot while the bot writes.
            _progress(f"the bot (pid {pid or 'unknown'}) is running; taking a live copy")
        try:
            mails, size = write_backup(settings.data_dir, database, file)
        except sqlite3.Error as exc:
            raise UserError(f"{database}: cannot back it up ({exc})") from None
        except OSError as exc:
            raise UserError(f"{file}: cannot write the backup ({exc.strerror or exc})") from None
    except UserError as exc:
        return fail(str(exc))
    noun = "mail" if mails == 1 else "mails"
    _progress(f"backup written to {file} (database {size}, {mails} stored {noun})")
    return 0
