"""Locate the packaged templates/ and config/ folders, from a checkout or an installed wheel."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def _resource(name: str) -> Path:
    # A wheel carries the folders inside the package; a checkout has them beside it.
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the packaged '{name}/' folder is missing; reinstall clusterbot")


def templates_dir() -> Path:
    """The folder of e-mail and bot-text templates."""
    return _resource("templates")


def config_dir() -> Path:
    """The folder of the shipped knowledge base and example settings."""
    return _resource("config")
