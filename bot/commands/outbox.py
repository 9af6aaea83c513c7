"""`clusterbot outbox list|retry`: look at queued e-mails and re-queue failed ones."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.commands.common import (
    UserError,
    add_config_option,
    fail,
    open_db,
    settings_from_args,
)

if TYPE_CHECKING:
    import sqlite_utils

    from bot.mail.outbox import DeliveryReport
    from bot.settings import Settings

STATUSES = ("pending", "sent", "failed", "all")


def add_parser(subparsers: Any) -> None:
    """Add `outbox` with its list/retry actions."""
    parser = subparsers.add_parser(
        "outbox",
        help="list queued e-mails, re-queue failed ones",
        description=(
            "The outbox holds every e-mail the bot sends (enquiries, reminders, digests). "
            "Temporary failures are retried automatically; permanent ones (5xx) stay 'failed' "
            "until re-queued with 'retry'."
        ),
    )
    add_config_option(parser)
    actions = parser.add_subparsers(
        title="actions", dest="action", metavar="ACTION", parser_class=type(parser)
    )
    actions.required = True

    listing = actions.add_parser(
        "list", help="e-mails in the outbox, oldest first", description="List outbox e-mails."
    )
    listing.add_argument(
        "--status", choices=STATUSES, default="all", help="which e-mails to list (default: all)"
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    add_config_option(listing, nested=True)
    listing.set_defaults(func=run, handler=_list)

    retry = actions.add_parser(
        "retry",
        help="re-queue failed e-mails",
        description=(
            "Put failed e-mails back in the queue with a fresh retry count. The running bot "
            "delivers them within a minute; --send delivers them now from this command."
        ),
    )
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, metavar="ID", help="the outbox id to re-queue")
    which.add_argument("--all-failed", action="store_true", help="re-queue every failed e-mail")
    retry.add_argument("--send", action="store_true", help="also deliver the due e-mails now")
    add_config_option(retry, nested=True)
    retry.set_defaults(func=run, handler=_retry)


async def deliver_now(settings: Settings, db: sqlite_utils.Database) -> DeliveryReport:
    """Deliver every due e-mail now, through the embedded store when smtp.host is empty."""
    from bot.mail.outbox import DeliveryReport, SmtpTarget, deliver_due
    from bot.storage import utc_now

    total = DeliveryReport()
    store = None
    if settings.smtp.host:
        target = SmtpTarget.from_settings(settings)
    else:
        from bot.mail.store import MailStore

        store = MailStore(settings.mail_dir, report=lambda path: print(f"e-mail saved to {path}"))
        host, port = await store.start()
        target = SmtpTarget.from_settings(settings, hostname=host, port=port, security="none")
    try:
        while True:
            report = await deliver_due(db, settings, utc_now(), target=target)
            total.add(report)
            if not report.more_due:
                break
    finally:
        if store is not None:
            await store.stop()
    return total


def _clean(value: Any, width: int) -> str:
    text = " ".join(("" if value is None else str(value)).split())
    # Server replies and subjects must not drive the operator's terminal.
    text = "".join(char if char.isprintable() else "?" for char in text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _local(settings: Settings, value: str | None) -> str:
    if not value:
        return ""
    from bot.storage import from_iso

    return from_iso(value).astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M")


def _list(args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    from bot.mail.outbox import list_outbox

    status = None if args.status == "all" else args.status
    with open_db(settings) as db:
        rows = list_outbox(db, status)
    if args.json:
        out.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return 0
    if not rows:
        print(f"no e-mails ({args.status})", file=out)
        return 0
    header = f"{'ID':>5}  {'STATUS':<8} {'KIND':<9} {'REF':<10} {'TRIES':>5}  {'WHEN':<16}  DETAIL"
    print(header, file=out)
    for row in rows:
        when = row["sent_at"] if row["status"] == "sent" else row["next_attempt_at"]
        if row["status"] == "failed":
            when = row["created_at"]
        detail = row["last_error"] if row["status"] != "sent" and row["last_error"] else ""
        detail = detail or row["subject"]
        print(
            f"{row['id']:>5}  {row['status']:<8} {row['kind']:<9} {row['ref'] or '-':<10} "
            f"{row['attempts']:>5}  {_local(settings, when):<16}  {_clean(detail, 70)}",
            file=out,
        )
    return 0


def _retry(args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    from bot.mail.outbox import OutboxError, count_mails, requeue
    from bot.storage import utc_now

    with open_db(settings) as db:
        try:
            ids = requeue(db, "all_failed" if args.all_failed else int(args.id), utc_now())
        except OutboxError as exc:
            raise UserError(str(exc)) from None
        if not ids:
            print("no failed e-mails to re-queue", file=out)
            return 0
        print(f"re-queued {count_mails(len(ids))}: {', '.join(str(i) for i in ids)}", file=out)
        if args.send:
            report = asyncio.run(deliver_now(settings, db))
            print(
                f"sent {count_mails(report.sent)}; {report.retried} to retry later; "
                f"{report.failed} refused",
                file=out,
            )
            for error in report.errors:
                print(f"  {_clean(error, 200)}", file=out)
            if report.failed or report.retried:
                return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action; user errors become one line on stderr and exit 1."""
    try:
        settings = settings_from_args(args)
        return int(args.handler(args, settings, sys.stdout))
    except UserError as exc:
        return fail(str(exc))
