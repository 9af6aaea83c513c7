"""Keep the docs honest: every command and every sub-command is documented in the README."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.cli import build_parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_is_in_the_readme(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    commands = _subcommands(build_parser())
    assert {"ask", "check"} <= set(commands)
    for name, sub in commands.items():
        assert f"clusterbot {name}" in readme, f"README does not document 'clusterbot {name}'"
        for child in _subcommands(sub):
            assert child in readme, f"README does not mention 'clusterbot {name} {child}'"


def test_every_command_has_help_text() -> None:
    for name, sub in _subcommands(build_parser()).items():
        assert sub.description, f"'clusterbot {name}' has no description"
        for action in sub._actions:
            if action.dest not in ("help",) and not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"'clusterbot {name}': option {action.dest} has no help"


def test_readme_opens_with_the_two_commands(repo_root: Path) -> None:
    head = (repo_root / "README.md").read_text(encoding="utf-8")[:300]
    assert "make chat" in head
    assert "make test" in head
