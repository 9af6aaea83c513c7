"""`clusterbot check`: settings, knowledge base, templates and the delivery queue at once."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from bot.commands.common import add_config_option
from bot.settings import Settings
from bot.settings.load import SettingsError, load_settings_with_problems
from bot.settings.run_problems import run_problems

# (module, function) pairs returning a list of problems; each module is optional so that
# `check` keeps working while a part of the product is absent from an installation.
TEMPLATE_CHECKS = (
    ("bot.mail.compose", "check_templates"),
    ("bot.dialogue.texts", "check_texts"),
    ("bot.enquiries.texts", "check_texts"),
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
            "template, the database and the data folder's permissions, what 'run' needs "
            "(token, admin chat, mail server), and report deliveries that failed "
            "permanently (dead) or are stuck. Prints where everything lives and every "
            "problem at once; exit code 1 if there is any error. Warnings (privacy "
            "placeholders, a question variant that matches another FAQ entry better than its "
            "own, a lexicon group that references nothing) are printed but do not fail it."
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
    parser.add_argument(
        "--telegram",
        action="store_true",
        help="also call Telegram's getMe with the token and check the admin chat is reachable",
    )
    parser.set_defaults(func=run)


def _check_knowledge(settings: Settings) -> tuple[list[str], list[str]]:
    """Errors and warnings of the knowledge base (FAQ data, lexicon)."""
    from bot.knowledge import KnowledgeBase, KnowledgeError
    from bot.knowledge.lint import lint

    try:
        kb = KnowledgeBase.from_settings(settings)
        # Read at load rather than on a question's first unknown word.
        kb.cues.common.words  # noqa: B018
    except KnowledgeError as exc:
        return list(exc.problems), []
    directory = settings.resolved_knowledge_dir
    findings = lint(kb, str(directory / "faq.yaml"), str(directory / "lexicon.yaml"))
    return findings.errors, findings.warnings


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
    ("bot.enquiries", "admin_chat_problems"),
)


def _check_database(settings: Settings) -> list[str]:
    """The database, if there is one: opens, passes its integrity check, nothing failed."""
    from bot.storage import StorageError, open_database

    if not settings.database_path.exists():
        return []
    checks = [_optional_check(module, function) for module, function in DATABASE_CHECKS]
    try:
        db = open_database(settings.database_path, create=False)
    except StorageError as exc:
        return [str(exc)]
    problems: list[str] = []
    try:
        for check in checks:
            if check is not None:
                problems.extend(check(db))
    finally:
        db.close()
    return problems


def _where(settings: Settings) -> list[str]:
    """Where everything lives, absolute, so an operator sees which files the bot uses."""
    database = settings.database_path
    state = "exists" if database.exists() else "not created yet: the bot creates it at start"
    source = settings.source
    lines = [
        f"settings: {source if source == 'defaults' else os.path.abspath(source)}",
        f"database: {os.path.abspath(database)} ({state})",
        f"knowledge base: {os.path.abspath(settings.resolved_knowledge_dir)}",
    ]
    if settings.smtp.embedded:
        lines.append(f"mail store: {os.path.abspath(settings.mail_dir)} (.eml files, not sent)")
    return lines


def _is_telegram_deployment(settings: Settings, args: argparse.Namespace) -> bool:
    telegram = settings.telegram
    return bool(
        args.telegram
        or telegram.token.strip()
        or telegram.admin_chat_id
        or telegram.admin_user_ids
        or telegram.webhook_url
    )


def _check_smtp(settings: Settings) -> tuple[list[str], str]:
    from bot.deliveries.smtp import describe_smtp, probe_smtp

    if not settings.smtp.embedded:
        smtp = settings.smtp
        login = f" and logging in as {smtp.username!r}" if smtp.username else ""
        timeout = int(smtp.timeout.total_seconds())
        _progress(f"SMTP: connecting to {smtp.host}:{smtp.port}{login} (up to {timeout}s)...")
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


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def probe_telegram(settings: Settings) -> tuple[list[str], list[str]]:
    """Call getMe, then getChat for the admin chat: (lines to print, problems)."""
    from telegram import Bot
    from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError

    from bot.logs import network_cause

    telegram = settings.telegram
    lines: list[str] = []
    problems: list[str] = []
    bot = Bot(telegram.token.strip(), base_url=telegram.base_url)
    host = urlsplit(telegram.base_url).netloc
    try:
        _progress(f"Telegram: calling getMe at {host}...")
        await bot.initialize()
        lines.append(f"Telegram: token OK, the bot is @{bot.username}")
        chat_id = telegram.admin_chat_id
        if not chat_id:
            lines.append("Telegram: no admin chat (telegram.admin_chat_id = 0)")
        else:
            try:
                chat = await bot.get_chat(chat_id)
            except (BadRequest, Forbidden) as exc:
                problems.append(
                    f"telegram.admin_chat_id: chat {chat_id} is not reachable ({exc.message}); "
                    f"add @{bot.username} to the secretariat's group, then check the id"
                )
            else:
                if chat.type == "private":
                    problems.append(
                        f"telegram.admin_chat_id: chat {chat_id} is a private chat; use the "
                        "secretariat's group chat"
                    )
                else:
                    title = f" {chat.title!r}" if chat.title else ""
                    lines.append(f"Telegram: admin chat {chat_id}{title} reachable ({chat.type})")
    except InvalidToken:
        problems.append(
            "telegram.token: Telegram refused the token (401 Unauthorized); copy it again "
            "from @BotFather (/token), or revoke it and use the new one"
        )
    except NetworkError as exc:
        problems.append(f"Telegram: cannot reach {host}: {network_cause(exc)}")
    except TelegramError as exc:
        problems.append(f"Telegram: getMe failed: {exc.message}")
    finally:
        with contextlib.suppress(Exception):
            await bot.shutdown()
    return lines, problems


def run(args: argparse.Namespace) -> int:
    """Run every check and print each problem on its own line."""
    from bot.storage import loose_modes

    try:
        settings, problems = load_settings_with_problems(args.config)
    except SettingsError as exc:
        # The one clear error: without its file, nothing else about this bot can be checked.
        for problem in exc.problems:
            print(f"clusterbot: error: {problem}", file=sys.stderr)
        return 1
    knowledge_errors, knowledge_warnings = _check_knowledge(settings)
    problems.extend(knowledge_errors)
    for module_name, function in TEMPLATE_CHECKS:
        check = _optional_check(module_name, function)
        if check is not None:
            problems.extend(check())
    problems.extend(_check_database(settings))
    problems.extend(loose_modes(settings.data_dir))
    notes = _where(settings)
    deployment = _is_telegram_deployment(settings, args)
    if deployment:
        problems.extend(run_problems(settings))
    else:
        notes.append(
            "Telegram: no token, so 'clusterbot run' would refuse to start (chat and ask "
            "work without one); set TELEGRAM_BOT_TOKEN to deploy"
        )
    # Only a valid configuration is worth a connection attempt.
    if args.telegram and not problems:
        lines, telegram_problems = asyncio.run(probe_telegram(settings))
        notes.extend(lines)
        problems.extend(telegram_problems)
    if args.smtp and not problems:
        smtp_problems, smtp_line = _check_smtp(settings)
        notes.append(smtp_line)
        problems.extend(smtp_problems)
    else:
        from bot.deliveries.smtp import describe_smtp

        notes.append(describe_smtp(settings, None))
    if getattr(args, "imap", False) and not problems:
        imap_problems, imap_line = _check_imap(settings)
        notes.append(imap_line)
        problems.extend(imap_problems)
    for line in notes:
        if line:
            print(line)
    # Placeholders do not stop the bot (the notice falls back to the secretariat), so they
    # are warnings: shown on every check until the operator fills them in.
    warnings = privacy_warnings(settings) + knowledge_warnings
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
