"""`clusterbot digest [--send]`: print the secretariat's digest, or send it now."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import IO, Any

from bot.commands.common import UserError, add_config_option, fail, settings_from_args


def add_parser(subparsers: Any) -> None:
    """Add `digest`."""
    parser = subparsers.add_parser(
        "digest",
        help="print the secretariat digest, or send it now",
        description=(
            "Print the digest the secretariat receives on [digest] cron: open enquiries "
            "oldest first with their age and reminders, and what was answered and closed "
            "since the last digest. With --send, queue it and deliver it now (nothing is "
            "sent when there is nothing to report)."
        ),
    )
    add_config_option(parser)
    parser.add_argument(
        "--send", action="store_true", help="queue the digest and deliver it now by e-mail"
    )
    parser.set_defaults(func=run)


def plural(count: int, one: str, many: str) -> str:
    """'1 open enquiry', '2 open enquiries'."""
    return f"{count} {one if count == 1 else many}"


def summary(digest: Any) -> str:
    """What a digest reports, in one line with proper singulars and plurals."""
    return (
        f"{plural(len(digest.open), 'open enquiry', 'open enquiries')}, "
        f"{digest.answered_count} answered, {digest.closed_count} closed"
    )


def _print(message: Any, out: IO[str]) -> None:
    print(f"Subject: {message['Subject']}", file=out)
    print(f"To: {message['To']}", file=out)
    print("", file=out)
    body = message.get_body(("plain",))
    print(body.get_content().rstrip("\n"), file=out)


def _run(args: argparse.Namespace, out: IO[str]) -> int:
    from bot.commands.common import open_db
    from bot.commands.deliveries import deliver_or_wake
    from bot.deliveries import store
    from bot.jobs.digest import build_digest, queue_digest
    from bot.mail.compose import digest_mail
    from bot.storage import utc_now

    settings = settings_from_args(args)
    now = utc_now()
    with open_db(settings) as db:
        if not args.send:
            digest = build_digest(db, settings, now)
            if digest.is_empty:
                print("nothing to report: no open enquiries, none answered or closed", file=out)
                return 0
            _print(digest_mail(settings, digest), out)
            return 0
        result = queue_digest(db, settings, now)
        if result.delivery_id is None:
            print("nothing to report: no digest sent", file=out)
            return 0
        report = asyncio.run(deliver_or_wake(settings, db, out))
        if report is None:
            return 0
        row = store.get(db, result.delivery_id)
    status = row.status if row else "unknown"
    if status == "sent":
        print(
            f"digest sent to {settings.secretariat.email} (delivery {result.delivery_id}): "
            f"{summary(result.digest)}",
            file=out,
        )
        return 0
    detail = row.last_error if row else ""
    if status in ("queued", "sending", "failed-temporary"):
        raise UserError(
            f"digest queued as delivery {result.delivery_id} but not delivered yet ({detail}); "
            "the running bot retries it"
        )
    raise UserError(
        f"digest refused by the mail server ({detail}); see 'clusterbot deliveries list'"
    )


def run(args: argparse.Namespace) -> int:
    """Print or send the digest; user errors become one line on stderr and exit 1."""
    try:
        return _run(args, sys.stdout)
    except UserError as exc:
        return fail(str(exc))
