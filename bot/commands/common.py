"""Helpers shared by the sub-commands: settings loading and one-line user errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bot.settings import Settings
from bot.settings.load import SettingsError, load_settings

if TYPE_CHECKING:
    import sqlite_utils


class UserError(Exception):
    """An error the user can fix; printed as one line, exit code 1."""


def add_config_option(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """The --config option every command that reads settings accepts."""
    # Nested (an action under a command): SUPPRESS, so the action's own default does not
    # erase a --config given before the action name.
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS if nested else None,
        help="settings file (TOML); default: $CLUSTERBOT_CONFIG, else built-in defaults",
    )


def add_actions(parser: argparse.ArgumentParser) -> Any:
    """Give a command --config and required actions (list, show, ...); returns their subparsers."""
    add_config_option(parser)
    actions = parser.add_subparsers(
        title="actions", dest="action", metavar="ACTION", parser_class=type(parser)
    )
    actions.required = True
    return actions


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Load settings named by --config / $CLUSTERBOT_CONFIG, or raise UserError."""
    try:
        return load_settings(getattr(args, "config", None))
    except SettingsError as exc:
        raise UserError("\n".join(exc.problems)) from None


def fail(message: str) -> int:
    """Print a user error to stderr and return exit code 1."""
    for line in message.splitlines() or [message]:
        print(f"clusterbot: error: {line}", file=sys.stderr)
    return 1


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr; keep libraries that log URLs (with the bot token in them) quiet."""
    import logging

    from bot.logs import setup_logging

    setup_logging(
        logging.DEBUG if verbose else logging.INFO,
        "%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request URL at INFO, and Telegram URLs contain the bot token.
    for noisy in ("httpx", "httpcore", "telegram.ext.Updater", "apscheduler", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def open_db(settings: Settings, *, create: bool = False) -> Iterator[sqlite_utils.Database]:
    """The existing database (or a new one with create=True), or a UserError naming the file."""
    from bot.storage import StorageError, open_database

    try:
        db = open_database(settings.database_path, create=create)
    except StorageError as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:
        raise UserError(f"{settings.database_path}: cannot open the database ({exc})") from None
    try:
        yield db
    finally:
        db.close()
