"""`clusterbot check`: settings, knowledge base, templates and the delivery queue at once."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable

from bot.commands.common import add_config_option
from bot.settings import Settings, SettingsError, load_settings

# (module, function) pairs returning a list of problems; each module is optional so that
# `check` keeps working while a part of the product is absent from an installation.
TEMPLATE_CHECKS = (
    ("bot.mail.compose", "check_templates"),
    ("bot.dialogue.texts", "check_texts"),
    ("bot.channels.telegram_render", "check_texts"),
    ("bot.mail.address_typos", "check_domains"),
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `check`."""
    parser = subparsers.add_parser(
        "check",
        help="validate settings, knowledge base and templates",
        description=(
            "Validate the settings file, the knowledge base (call facts and FAQ), every "
            "template, and report deliveries that failed permanently (dead) or are stuck. "
            "Prints every problem at once; exit code 1 if there is any."
        ),
    )
    add_config_option(parser)
    parser.add_argument(
        "--smtp", action="store_true", help="also connect and log in to the SMTP server"
    )
    parser.add_argument(
        "--imap",
        action="store_true",
        help="also log in to the bot's mailbox ([inbox]) and report the folder state",
    )
    parser.set_defaults(func=run)


def _check_knowledge(settings: Settings) -> list[str]:
    from bot.knowledge import KnowledgeBase, KnowledgeError

    try:
        KnowledgeBase.from_settings(settings)
    except KnowledgeError as exc:
        return list(exc.problems)
    return []


def _optional_check(module_name: str, function: str) -> Callable[..., list[str]] | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing part of clusterbot is optional, never a missing dependency.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return None
        raise
    check: Callable[..., list[str]] | None = getattr(module, function, None)
    return check


# (module, function) pairs taking the database: what failed for good and needs a person.
DATABASE_CHECKS = (
    ("bot.deliveries.store", "problems"),
    ("bot.channels.telegram_journal", "quarantine_problems"),
)


def _check_database(settings: Settings) -> list[str]:
    if not settings.database_path.exists():
        return []
    checks = [_optional_check(module, function) for module, function in DATABASE_CHECKS]
    from bot.storage import open_database

    db = open_database(settings.database_path)
    problems: list[str] = []
    try:
        for check in checks:
            if check is not None:
                problems.extend(check(db))
    finally:
        db.close()
    return problems


def _check_smtp(settings: Settings) -> tuple[list[str], str]:
    from bot.deliveries.smtp import describe_smtp, probe_smtp

    problems: list[str] = asyncio.run(probe_smtp(settings))
    return problems, describe_smtp(settings, problems)


PRIVACY_HELP = {
    "controller": "the organisation responsible for the data (name and address)",
    "contact": "how applicants reach the controller about their data (e-mail or address)",
    "dpo": "the data protection officer's contact, or empty if there is none",
    "supervisory_authority": "the authority applicants may complain to (in Italy, the Garante)",
}


def privacy_warnings(settings: Settings) -> list[str]:
    """Privacy-notice keys still unset or placeholders: the notice falls back to generic text."""
    return [
        f"[privacy] {key} is not set: {PRIVACY_HELP[key]} (GDPR art. 13 privacy notice)"
        for key in settings.privacy.placeholders()
    ]


def _check_imap(settings: Settings) -> tuple[list[str], str]:
    from bot.mail.inbound.imap import probe_imap

    return asyncio.run(probe_imap(settings))


def run(args: argparse.Namespace) -> int:
    """Run every check and print each problem on its own line."""
    problems: list[str] = []
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        problems.extend(exc.problems)
        settings = Settings()
    problems.extend(_check_knowledge(settings))
    for module_name, function in TEMPLATE_CHECKS:
        check = _optional_check(module_name, function)
        if check is not None:
            problems.extend(check())
    problems.extend(_check_database(settings))
    smtp_line = ""
    # Only a valid configuration is worth a login attempt.
    if args.smtp and not problems:
        smtp_problems, smtp_line = _check_smtp(settings)
        problems.extend(smtp_problems)
    imap_line = ""
    if getattr(args, "imap", False) and not problems:
        imap_problems, imap_line = _check_imap(settings)
        problems.extend(imap_problems)
    if smtp_line:
        print(smtp_line)
    if imap_line:
        print(imap_line)
    # Placeholders do not stop the bot (the notice falls back to the secretariat), so they
    # are warnings: shown on every check until the operator fills them in.
    warnings = privacy_warnings(settings)
    for warning in warnings:
        print(f"clusterbot: warning: {warning}", file=sys.stderr)
    if problems:
        for problem in problems:
            print(f"clusterbot: error: {problem}", file=sys.stderr)
        noun = "problem" if len(problems) == 1 else "problems"
        print(f"{len(problems)} {noun} found.", file=sys.stderr)
        return 1
    noted = (
        f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''} above)" if warnings else ""
    )
    print(f"OK: settings ({settings.source}), knowledge base, templates.{noted}")
    return 0
