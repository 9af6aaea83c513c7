"""`clusterbot health`: is the bot running and is its work flowing? Exit 0 yes, 1 no."""

from __future__ import annotations

import argparse
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.commands.common import UserError, add_config_option, fail, settings_from_args

# Work that should have left long ago: deliveries due and not sent, or Telegram updates
# received and not handled.
STUCK_AFTER = timedelta(hours=1)


def add_parser(subparsers: Any) -> None:
    """Add `health`."""
    parser = subparsers.add_parser(
        "health",
        help="exit 0 if the bot runs and delivers, 1 otherwise (for monitoring)",
        description=(
            "Check, without changing anything, that the bot is running (`clusterbot run` holds "
            "the data directory's lock), that no delivery failed permanently, and that no "
            "mail, chat message or Telegram update has been waiting longer than an hour. One "
            "line per check; exit code 0 when all pass, 1 otherwise."
        ),
    )
    add_config_option(parser)
    parser.set_defaults(func=run)


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


def health_checks(conn: sqlite3.Connection, now: datetime) -> list[tuple[bool, str]]:
    """(passed, line) for each check of the work in the database, reading only."""
    results: list[tuple[bool, str]] = []
    tables = _tables(conn)
    cutoff = (now - STUCK_AFTER).isoformat(timespec="microseconds")
    if "deliveries" in tables:
        dead = conn.execute("SELECT count(*) FROM deliveries WHERE status = 'dead'").fetchone()[0]
        if dead:
            results.append(
                (False, f"deliveries: {dead} refused permanently; see 'clusterbot deliveries list'")
            )
        stuck = conn.execute(
            "SELECT count(*) FROM deliveries "
            "WHERE status IN ('queued', 'retrying', 'sending') AND next_attempt_at < ?",
            (cutoff,),
        ).fetchone()[0]
        if stuck:
            results.append((False, f"deliveries: {stuck} due for over an hour and not sent"))
        if not dead and not stuck:
            results.append((True, "deliveries: flowing"))
    if "updates" in tables:
        stuck = conn.execute(
            "SELECT count(*) FROM updates WHERE handled_at IS NULL AND received_at < ?",
            (cutoff,),
        ).fetchone()[0]
        if stuck:
            results.append(
                (False, f"Telegram updates: {stuck} received over an hour ago, unhandled")
            )
        else:
            results.append((True, "Telegram updates: handled"))
    return results


def run(args: argparse.Namespace) -> int:
    """Print one line per check; exit 0 if all pass."""
    from bot.storage import BUSY_TIMEOUT_MS

    try:
        settings = settings_from_args(args)
        database = settings.database_path
        if not database.exists():
            raise UserError(
                f"no database at {os.path.abspath(database)}: the bot never started here "
                "(or --config)"
            )
        try:
            conn = sqlite3.connect(
                f"{database.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
            )
            try:
                results = health_checks(conn, datetime.now(UTC))
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise UserError(f"{database}: cannot read the database ({exc})") from None
        from bot import instance

        pid = instance.holder(settings)
        if pid is None:
            results.insert(0, (False, "bot: not running (nothing holds the data directory)"))
        else:
            results.insert(0, (True, f"bot: running (pid {pid or 'unknown'})"))
    except UserError as exc:
        return fail(str(exc))
    for passed, line in results:
        print(f"{'OK  ' if passed else 'FAIL'} {line}")
    healthy = all(passed for passed, _ in results)
    print("healthy" if healthy else "unhealthy")
    return 0 if healthy else 1
