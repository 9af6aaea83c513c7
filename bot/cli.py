"""The `clusterbot` command line: builds the argument parser and dispatches to bot.commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from bot.commands.common import UserError, fail

# Each module in bot.commands adds its own sub-command; imports stay light (no telegram).
COMMANDS = (
    "chat",
    "web",
    "run",
    "ask",
    "enquiries",
    "deliveries",
    "inbox",
    "digest",
    "check",
    "backup",
    "health",
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors say how to get help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n(run '{self.prog} --help' for help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command."""
    parser = _Parser(
        prog="clusterbot",
        description=(
            "Contact bot for the COSME call COS-CLUSTER-2020-3-03: answers questions about "
            "the call and forwards the others to the secretariat."
        ),
    )
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", parser_class=_Parser
    )
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"bot.commands.{name}")
        except ModuleNotFoundError as exc:
            # A command whose module is absent is skipped; a missing dependency is a real error.
            if exc.name != f"bot.commands.{name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


# Everything the bot writes (database, mail, exports, backups) holds personal data.
PRIVATE_UMASK = 0o077
# What a shell reports for a process ended by SIGPIPE (`clusterbot ... | head -1`).
EXIT_BROKEN_PIPE = 128 + 13


def _quiet_broken_pipe() -> int:
    # The reader went away (e.g. `| head -1`): stop quietly. Point stdout at /dev/null so
    # the interpreter's final flush does not complain about the closed pipe either.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    # Set here, not at import: files and folders the command creates are private.
    previous_umask = os.umask(PRIVATE_UMASK)
    try:
        return _dispatch(argv)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    finally:
        os.umask(previous_umask)


def _dispatch(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        result = int(func(args))
        # A pipe closed by the reader shows up here, at the latest.
        sys.stdout.flush()
        return result
    except UserError as exc:
        return fail(str(exc))
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        print("clusterbot: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("CLUSTERBOT_DEBUG"):
            raise
        # Operators get one line; CLUSTERBOT_DEBUG=1 shows the traceback for a bug report.
        return fail(f"unexpected {type(exc).__name__}: {exc} (set CLUSTERBOT_DEBUG=1 for details)")
