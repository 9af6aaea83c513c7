"""Imports run one way, down (issue 10): no module imports a layer above its own.

From the bottom: foundations (settings, storage, ...), services (knowledge, enquiries,
mail, deliveries, jobs, ...), the dialogue, the app, the channels, the commands. Every
import counts, also one inside a function or under TYPE_CHECKING: a lazy import still
ties the lower module to the upper one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parent.parent / "bot"

_FOUNDATIONS = ("bot.settings", "bot.storage", "bot.resources", "bot.logs")
_SERVICES = (
    "bot.knowledge",
    "bot.enquiries",
    "bot.mail",
    "bot.deliveries",
    "bot.jobs",
    "bot.stats",
    "bot.instance",
)
_ABOVE_SERVICES = ("bot.dialogue", "bot.app", "bot.channels", "bot.commands", "bot.cli")

# (modules, what they must not import); a name matches itself and everything under it.
RULES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (_FOUNDATIONS, (*_SERVICES, *_ABOVE_SERVICES, "telegram")),
    (_SERVICES, (*_ABOVE_SERVICES, "telegram")),
    (("bot.dialogue",), ("bot.app", "bot.channels", "bot.commands", "bot.cli", "telegram")),
    (("bot.app",), ("bot.channels", "bot.commands", "bot.cli", "telegram")),
    (("bot.channels",), ("bot.commands", "bot.cli")),
)


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _module_name(path: Path) -> str:
    parts = path.relative_to(BOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module the source of `module` imports, anywhere in it (absolute names)."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            # `from bot import jobs` imports the module bot.jobs.
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def climbs(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """The imports in the source of `module` that reach a layer above its own."""
    imported = imported_names(source, module, is_package=is_package)
    found: set[str] = set()
    for modules, forbidden in RULES:
        if _under(module, modules):
            found.update(name for name in imported if _under(name, forbidden))
    # `from bot.dialogue import texts` adds both bot.dialogue and bot.dialogue.texts:
    # report the most precise name only.
    return sorted(name for name in found if not any(o.startswith(name + ".") for o in found))


@pytest.mark.parametrize("path", sorted(BOT.rglob("*.py")), ids=lambda path: _module_name(path))
def test_imports_run_one_way_down(path: Path) -> None:
    module = _module_name(path)
    source = path.read_text(encoding="utf-8")
    found = climbs(source, module, is_package=path.name == "__init__.py")
    assert found == [], f"{module} imports a layer above its own"


def test_the_check_sees_a_climb() -> None:
    # A service importing the dialogue (lazily, too) or a channel is caught; its own
    # package (relative import) and storage are not.
    source = (
        "from bot.storage import transaction\n"
        "from bot import channels\n"
        "def f():\n"
        "    from bot.dialogue import texts\n"
        "    from . import records\n"
        "    from ..mail import compose\n"
    )
    assert climbs(source, "bot.enquiries.probe") == ["bot.channels", "bot.dialogue.texts"]
    assert climbs(source, "bot.channels.probe") == []
    assert climbs("import telegram\n", "bot.dialogue.flows.probe") == ["telegram"]
    assert climbs("from . import engine\n", "bot.dialogue", is_package=True) == []
    assert climbs("from .. import app\n", "bot.dialogue", is_package=True) == ["bot.app"]
    assert climbs("from .. import app\n", "bot.dialogue.engine") == ["bot.app"]
