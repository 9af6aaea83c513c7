"""The `clusterbot` command line: builds the argument parser and dispatches to bot.commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from bot.commands.common import UserError, fail

# Each module in bot.commands adds its own sub-command; imports stay light (no telegram).
COMMANDS = ("chat", "run", "ask", "enquiries", "deliveries", "inbox", "digest", "check")


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args))
    except UserError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print("clusterbot: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("CLUSTERBOT_DEBUG"):
            raise
        # Operators get one line; CLUSTERBOT_DEBUG=1 shows the traceback for a bug report.
        return fail(f"unexpected {type(exc).__name__}: {exc} (set CLUSTERBOT_DEBUG=1 for details)")
