"""`clusterbot inbox status|import`: the bot's mailbox for the secretariat's e-mail replies."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bot.commands.common import (
    UserError,
    add_actions,
    add_config_option,
    fail,
    open_db,
    settings_from_args,
)
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.mail.inbound.process import InboundResult

# Larger files are not e-mails anyone saved from a mail client.
MAX_IMPORT_BYTES = 25 * 1024 * 1024


def add_parser(subparsers: Any) -> None:
    """Add `inbox` with its status/import actions."""
    parser = subparsers.add_parser(
        "inbox",
        help="the bot's mailbox: state, or feed a saved reply",
        description=(
            "The secretariat answers an enquiry by replying to its e-mail; with [inbox] set "
            "the bot reads those replies over IMAP and relays the answers to the applicants."
        ),
    )
    actions = add_actions(parser)
    status = actions.add_parser(
        "status",
        help="cursor, last poll and messages not relayed",
        description=(
            "Show where the IMAP reader stands (UIDVALIDITY and last UID), when it last "
            "polled, its last error, and the messages it kept without relaying them."
        ),
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_option(status, nested=True)
    status.set_defaults(func=run, handler=_status)
    imported = actions.add_parser(
        "import",
        help="feed one saved e-mail (.eml) through the inbound pipeline",
        description=(
            "Read a reply saved as an .eml file and process it exactly as if it had arrived "
            "in the bot's mailbox: a secretariat answer is relayed to the applicant."
        ),
    )
    imported.add_argument("file", metavar="FILE.eml", help="the saved e-mail (RFC 5322)")
    add_config_option(imported, nested=True)
    imported.set_defaults(func=run, handler=_import)


def _clean(value: Any, width: int) -> str:
    text = " ".join(("" if value is None else str(value)).split())
    text = "".join(char if char.isprintable() else "?" for char in text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _status(args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    from bot.mail.inbound.cursor import inbox_status

    with open_db(settings) as db:
        state = inbox_status(db, settings)
    if args.json:
        out.write(json.dumps(state, ensure_ascii=False, indent=2) + "\n")
        return 0
    if state["configured"]:
        print(
            f"mailbox: {settings.inbox.username}@{settings.inbox.host}, folder {state['folder']!r}",
            file=out,
        )
    else:
        print(
            "mailbox: none ([inbox] host not set); 'clusterbot inbox import' still works", file=out
        )
    cursor = state["cursor"]
    if cursor:
        print(
            f"cursor: UIDVALIDITY {cursor['uidvalidity']}, last UID {cursor['last_uid']} "
            f"(moved {cursor['updated_at']})",
            file=out,
        )
    else:
        print("cursor: none yet (nothing read from the mailbox)", file=out)
    print(f"last poll: {state['last_poll'] or 'never'}", file=out)
    if state["last_error"]:
        print(f"last error: {_clean(state['last_error'], 200)}", file=out)
    counts = state["counts"]
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "none"
    print(f"messages: {summary}", file=out)
    rows = state["not_relayed"]
    if rows:
        print("not relayed (unmatched or refused), newest first:", file=out)
        for row in rows:
            print(
                f"  #{row['id']} {row['received_at'][:16]} {row['status']:<9} "
                f"{row['ref'] or '-':<10} {_clean(row['sender'], 40)}: "
                f"{_clean(row['subject'], 50)} ({_clean(row['reason'], 60)})",
                file=out,
            )
    return 0


def _describe(result: InboundResult) -> str:
    if result.duplicate:
        return f"already processed as #{result.inbound_id} ({result.status}); nothing done"
    if result.relayed:
        return (
            f"answer recorded for {result.ref}: relayed to the applicant by e-mail, and to "
            "their chat by the running bot"
        )
    if result.status == "follow_up":
        return f"follow-up from the applicant of {result.ref}: forwarded to the secretariat"
    where = f" ({result.ref})" if result.ref else ""
    reason = f": {result.reason}" if result.reason else ""
    return f"kept as #{result.inbound_id}: {result.status}{where}{reason}"


def _import(args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    from bot.mail.inbound.process import process_mail
    from bot.storage import utc_now

    path = Path(args.file)
    try:
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise UserError(f"{path}: larger than 25 MB; not an e-mail reply")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder; give one .eml file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if b":" not in raw[:2000]:
        raise UserError(f"{path}: not an e-mail (no header lines); save the message as .eml")
    # Like the running bot would: an import is kept (as unmatched) even on a fresh install.
    with open_db(settings, create=True) as db:
        result = process_mail(db, settings, raw, source=f"import:{path.name}", now=utc_now())
        print(_describe(result), file=out)
        if not result.duplicate and result.status in ("answer", "follow_up"):
            from bot.commands.deliveries import deliver_or_wake

            # The e-mails it queued go out now (or the running bot is woken to send them).
            asyncio.run(deliver_or_wake(settings, db, out))
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action; user errors become one line on stderr and exit 1."""
    try:
        settings = settings_from_args(args)
        return int(args.handler(args, settings, sys.stdout))
    except UserError as exc:
        return fail(str(exc))
