"""`clusterbot deliveries list|retry` (alias `outbox`): look at the delivery queue and
re-queue dead deliveries."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.commands.common import (
    UserError,
    add_actions,
    add_config_option,
    fail,
    open_db,
    settings_from_args,
)

if TYPE_CHECKING:
    import sqlite_utils

    from bot.deliveries.model import DeliveryReport
    from bot.settings import Settings

STATUSES = (
    "pending",
    "queued",
    "sending",
    "sent",
    "failed-temporary",
    "failed",
    "dead",
    "cancelled",
    "all",
)


def add_parser(subparsers: Any) -> None:
    """Add `deliveries` (and its alias `outbox`) with the list/retry actions."""
    parser = subparsers.add_parser(
        "deliveries",
        aliases=["outbox"],
        help="list queued messages (e-mail, Telegram), re-queue dead ones",
        description=(
            "The delivery queue holds every message the bot sends: e-mails (enquiries, "
            "reminders, digests, failure notices) and chat messages. Temporary failures are "
            "retried automatically; permanent ones stay 'dead' (alias 'failed') until "
            "re-queued with 'retry'. 'outbox' is the old name of this command."
        ),
    )
    actions = add_actions(parser)

    listing = actions.add_parser(
        "list", help="queued messages, oldest first", description="List the delivery queue."
    )
    listing.add_argument(
        "--status",
        choices=STATUSES,
        default="all",
        help="which deliveries to list: pending is queued, sending or failed-temporary; "
        "failed is dead (default: all)",
    )
    listing.add_argument("--transport", help="only this transport (smtp, telegram, ...)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    add_config_option(listing, nested=True)
    listing.set_defaults(func=run, handler=_list)

    retry = actions.add_parser(
        "retry",
        help="re-queue dead deliveries",
        description=(
            "Put dead deliveries back in the queue with a fresh retry count. The running bot "
            "is woken and sends them at once; --send delivers them from this command when "
            "no bot is running on this data directory."
        ),
    )
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, metavar="ID", help="the delivery id")
    which.add_argument("--all-failed", action="store_true", help="re-queue every dead delivery")
    retry.add_argument("--send", action="store_true", help="also deliver the due messages now")
    add_config_option(retry, nested=True)
    retry.set_defaults(func=run, handler=_retry)


async def deliver_now(settings: Settings, db: sqlite_utils.Database) -> DeliveryReport:
    """Deliver every due e-mail now, as one more sender (claims keep senders apart).

    Through the embedded store when smtp.host is empty.
    """
    from bot.deliveries.smtp import SmtpTarget, SmtpTransport
    from bot.deliveries.worker import Worker
    from bot.enquiries import DeliveryRules

    store = None
    if not settings.smtp.embedded:
        target = SmtpTarget.from_settings(settings)
    else:
        from bot.mail.store import MailStore

        store = MailStore(settings.mail_dir, report=lambda path: print(f"e-mail saved to {path}"))
        host, port = await store.start()
        target = SmtpTarget.from_settings(settings, hostname=host, port=port, security="none")
    worker = Worker(
        db,
        [SmtpTransport(target)],
        hook=DeliveryRules(settings),
        caps={("smtp", "enquiry"): settings.enquiries.max_mails_per_hour},
    )
    try:
        return await worker.deliver_due()
    finally:
        worker.close()
        if store is not None:
            await store.stop()


async def deliver_or_wake(
    settings: Settings, db: sqlite_utils.Database, out: IO[str]
) -> DeliveryReport | None:
    """Leave delivery to the running bot when there is one (and wake it); else deliver."""
    from bot import instance

    pid = instance.holder(settings)
    if pid is not None:
        instance.notify(settings)
        who = f"PID {pid}" if pid else "another process"
        print(f"queued: the running bot ({who}) delivers it", file=out)
        return None
    return await deliver_now(settings, db)


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


def _subject(payload: bytes | str | None, transport: str) -> str:
    if not payload or transport != "smtp":
        return ""
    from email.parser import BytesHeaderParser
    from email.policy import default as default_policy

    data = payload if isinstance(payload, bytes) else payload.encode()
    return str(BytesHeaderParser(policy=default_policy).parsebytes(data).get("Subject", ""))


def listing(db: sqlite_utils.Database, status: str | None, transport: str | None) -> list[Any]:
    """The rows to list, without payloads: their subject (mail) and size instead."""
    from bot.deliveries import store

    rows = []
    for item in store.list_deliveries(db, status, transport):
        rows.append(
            {
                "id": item.id,
                "transport": item.transport,
                "kind": item.kind,
                "status": item.status,
                "ref": store.enquiry_ref(db, item.enquiry_id),
                "enquiry_id": item.enquiry_id,
                "key": item.idempotency_key,
                "recipient": store.recipients(item) if item.transport == "smtp" else None,
                "attempts": item.attempts,
                "next_attempt_at": item.next_attempt_at,
                "lease_owner": item.lease_owner,
                "last_error": item.last_error,
                "created_at": item.created_at,
                "sent_at": item.sent_at,
                "subject": _subject(item.payload, item.transport),
                "size": len(item.payload or b""),
            }
        )
    return rows


def _list(args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    from bot.deliveries.store import DeliveryError

    status = None if args.status == "all" else args.status
    with open_db(settings) as db:
        try:
            rows = listing(db, status, args.transport)
        except DeliveryError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        out.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return 0
    if not rows:
        print(f"no deliveries ({args.status})", file=out)
        return 0
    header = (
        f"{'ID':>5}  {'STATUS':<16} {'VIA':<8} {'KIND':<14} {'REF':<10} {'TRIES':>5}  "
        f"{'WHEN':<16}  DETAIL"
    )
    print(header, file=out)
    for row in rows:
        when = row["sent_at"] if row["status"] == "sent" else row["next_attempt_at"]
        if row["status"] in ("dead", "cancelled"):
            when = row["created_at"]
        detail = row["last_error"] if row["status"] != "sent" and row["last_error"] else ""
        detail = detail or row["subject"]
        print(
            f"{row['id']:>5}  {row['status']:<16} {row['transport']:<8} {row['kind']:<14} "
            f"{row['ref'] or '-':<10} {row['attempts']:>5}  {_local(settings, when):<16}  "
            f"{_clean(detail, 70)}",
            file=out,
        )
    return 0


def _count(count: int) -> str:
    return f"{count} delivery" if count == 1 else f"{count} deliveries"


def _retry(args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    from bot import instance
    from bot.deliveries.store import DeliveryError, requeue
    from bot.storage import utc_now

    with open_db(settings) as db:
        try:
            ids = requeue(db, "all_failed" if args.all_failed else int(args.id), utc_now())
        except DeliveryError as exc:
            raise UserError(str(exc)) from None
        if not ids:
            print("no dead deliveries to re-queue", file=out)
            return 0
        print(f"re-queued {_count(len(ids))}: {', '.join(str(i) for i in ids)}", file=out)
        if not args.send:
            instance.notify(settings)
            return 0
        report = asyncio.run(deliver_or_wake(settings, db, out))
        if report is None:
            return 0
        print(
            f"sent {_count(report.sent)}; {report.retried} to retry later; {report.failed} refused",
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
