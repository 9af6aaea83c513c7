"""`clusterbot chat`: talk to the bot in the terminal, with the same engine as Telegram."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bot.commands.common import UserError, add_config_option, fail, settings_from_args


def add_parser(subparsers: Any) -> None:
    """Add the `chat` sub-command."""
    parser = subparsers.add_parser(
        "chat",
        help="talk to the bot in the terminal",
        description=(
            "Talk to the bot in the terminal. Buttons show as numbered choices: type the "
            "number or the label. /quit or Ctrl-D leaves; stdin may be a pipe. With no "
            "settings, data goes to ./var/ and mail to ./var/mail/ as .eml files."
        ),
    )
    parser.add_argument(
        "--lang",
        choices=("it", "en"),
        help="reply language (as if chosen with /language); default: detected, else settings",
    )
    add_config_option(parser)
    parser.add_argument(
        "--user",
        metavar="ID",
        help="conversation identity (default: $CLUSTERBOT_USER, else your login name); "
        "the same id continues an unfinished enquiry",
    )
    parser.add_argument(
        "--new-database",
        action="store_true",
        help=(
            "start with a new, empty database although this data folder shows the bot ran "
            "here before (its database is missing: restore the backup instead if you have one)"
        ),
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the console channel until end of input or /quit."""
    from bot import instance
    from bot.channels.console import environment_user, run_console
    from bot.commands.run import EXIT_DATABASE_LOST
    from bot.knowledge.errors import KnowledgeError
    from bot.storage import DatabaseFileLost, StorageError

    try:
        settings = settings_from_args(args)
        user = args.user or environment_user()
        if not user.strip() or len(user) > 64:
            raise UserError(f"--user must be 1-64 characters, got {user!r}")
        # Like `run`: an empty database in a used data folder would issue references again.
        problem = instance.database_missing(settings, new_database=args.new_database)
        if problem is not None:
            raise UserError(problem)
        return asyncio.run(
            run_console(settings, lang=args.lang, user_id=user, new_database=args.new_database)
        )
    except UserError as exc:
        return fail(str(exc))
    except KnowledgeError as exc:
        return fail("\n".join(exc.problems))
    except DatabaseFileLost:
        # The app already said so in one line; the same exit code as `run`.
        return EXIT_DATABASE_LOST
    except StorageError as exc:
        # A damaged database: one line naming it.
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot start the chat: {exc}")
