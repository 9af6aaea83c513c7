"""`clusterbot enquiries`: list, show, close and export the enquiries in the database."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from bot.commands.common import (
    UserError,
    add_actions,
    add_config_option,
    fail,
    open_db,
    settings_from_args,
)
from bot.settings import Settings

# Characters of the question shown per row in `list`.
QUESTION_PREVIEW = 50


def add_parser(subparsers: Any) -> None:
    """Add `enquiries` with its list/show/close/export sub-commands."""
    parser = subparsers.add_parser(
        "enquiries",
        help="list, show, close or export enquiries",
        description="Work with the enquiries applicants sent to the secretariat.",
    )
    actions = add_actions(parser)

    listing = actions.add_parser(
        "list", help="enquiries, oldest first", description="List enquiries, oldest first."
    )
    listing.add_argument(
        "--status",
        choices=("open", "answered", "closed", "all"),
        default="open",
        help="which enquiries to list (default: open)",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    add_config_option(listing, nested=True)
    listing.set_defaults(func=run, handler=_list)

    show = actions.add_parser(
        "show",
        help="one enquiry with its history",
        description=(
            "Show one enquiry: every field, its deliveries (e-mails, chat messages) and its "
            "audit history."
        ),
    )
    show.add_argument("ref", metavar="REF", help="the reference, e.g. ECCP-0042")
    show.add_argument("--json", action="store_true", help="print a JSON object")
    add_config_option(show, nested=True)
    show.set_defaults(func=run, handler=_show)

    close = actions.add_parser(
        "close",
        help="mark an enquiry closed",
        description="Mark an enquiry closed without sending an answer (actor 'cli').",
    )
    close.add_argument("ref", metavar="REF", help="the reference, e.g. ECCP-0042")
    close.add_argument("--note", metavar="T", help="an internal note kept with the enquiry")
    add_config_option(close, nested=True)
    close.set_defaults(func=run, handler=_close)

    export = actions.add_parser(
        "export",
        help="export every enquiry as CSV or JSON Lines",
        description="Export every enquiry (all statuses), oldest first.",
    )
    export.add_argument(
        "--format", choices=("csv", "jsonl"), required=True, help="csv or jsonl (one JSON per line)"
    )
    export.add_argument(
        "-o", "--output", metavar="F", help="write to this file (default: standard output)"
    )
    add_config_option(export, nested=True)
    export.set_defaults(func=run, handler=_export)


def _local(settings: Settings, value: str | None) -> str:
    if not value:
        return ""
    from bot.storage import from_iso

    moment = from_iso(value).astimezone(ZoneInfo(settings.timezone))
    return moment.strftime("%Y-%m-%d %H:%M")


def _count(number: int, one: str, many: str) -> str:
    """'1 enquiry', '0 enquiries', '3 enquiries'."""
    return f"{number} {one if number == 1 else many}"


def _one_line(value: Any, width: int) -> str:
    text = " ".join(("" if value is None else str(value)).split())
    # Control characters typed by an applicant must not drive the operator's terminal.
    text = "".join(char if char.isprintable() else "?" for char in text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _list(args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    from bot.enquiries import list_enquiries, public_record

    with open_db(settings) as db:
        rows = list_enquiries(db, args.status)
    if args.json:
        out.write(json.dumps([public_record(row) for row in rows], ensure_ascii=False, indent=2))
        out.write("\n")
        return 0
    if not rows:
        out.write(f"no {'' if args.status == 'all' else args.status + ' '}enquiries\n")
        return 0
    header = ("REF", "STATUS", "CREATED", "COUNTRY", "ORGANISATION", "QUESTION")
    table = [header] + [
        (
            row["ref"] or "",
            row["status"],
            _local(settings, row["created_at"]),
            _one_line(row["country"], 20),
            _one_line(row["organisation"], 30) if not row["erased_at"] else "(erased)",
            _one_line(row["question"], QUESTION_PREVIEW) if not row["erased_at"] else "",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        out.write("\n")
    return 0


def _show(args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    from bot.enquiries import enquiry_deliveries, enquiry_history, get_enquiry, public_record
    from bot.mail.inbound.process import enquiry_inbound

    with open_db(settings) as db:
        row = get_enquiry(db, args.ref)
        if row is None:
            raise UserError(f"no enquiry with reference {args.ref.strip()!r}")
        history = enquiry_history(db, row["id"])
        mails = enquiry_deliveries(db, row["id"])
        received = enquiry_inbound(db, row["id"])
    record = public_record(row)
    if args.json:
        record["history"] = history
        record["deliveries"] = mails
        record["received"] = received
        out.write(json.dumps(record, ensure_ascii=False, indent=2) + "\n")
        return 0
    labels = (
        ("ref", "Reference"),
        ("status", "Status"),
        ("created_at", "Created"),
        ("channel", "Channel"),
        ("lang", "Language"),
        ("name", "Name"),
        ("email", "E-mail"),
        ("organisation", "Organisation"),
        ("country", "Country"),
        ("answered_at", "Answered"),
        ("answered_by", "Answered by"),
        ("closed_at", "Closed"),
        ("closed_by", "Closed by"),
        ("close_note", "Note"),
        ("reminder_count", "Reminders"),
        ("erased_at", "Erased"),
    )
    for key, label in labels:
        value = record.get(key)
        if value in (None, ""):
            continue
        if key.endswith("_at"):
            value = _local(settings, str(value))
        out.write(f"{label + ':':<14}{_one_line(value, 200)}\n")
    if record.get("question"):
        out.write("Question:\n")
        for line in str(record["question"]).splitlines():
            out.write(f"  {_one_line(line, 500)}\n")
    if record.get("answer"):
        out.write("Answer:\n")
        for line in str(record["answer"]).splitlines():
            out.write(f"  {_one_line(line, 500)}\n")
    if record["faq_history"]:
        out.write("Asked before:\n")
        for item in record["faq_history"]:
            out.write(f"  - {_one_line(item, 200)}\n")
    if mails:
        out.write("Deliveries:\n")
        for mail in mails:
            out.write(
                f"  #{mail['id']} {mail['transport']} {mail['kind']} {mail['status']} "
                f"attempts={mail['attempts']} {mail['key']}\n"
            )
    if received:
        out.write("Received e-mails:\n")
        for mail in received:
            extra = f", {mail['attachments']} attachment(s)" if mail["attachments"] else ""
            out.write(
                f"  #{mail['id']} {_local(settings, mail['received_at'])} {mail['status']} "
                f"from {_one_line(mail['sender'] or '-', 80)}{extra} {mail['message_id']}\n"
            )
    out.write("History:\n")
    for event in history:
        out.write(f"  {_local(settings, event['at'])}  {event['event']:<10} {event['actor']}\n")
    return 0


def _close(args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    from bot.enquiries import EnquiryError, close_enquiry
    from bot.storage import utc_now

    note = args.note
    if note is not None and any(not char.isprintable() for char in note):
        raise UserError("--note must be one line of printable text")
    with open_db(settings) as db:
        try:
            row = close_enquiry(db, args.ref, actor="cli", now=utc_now(), note=note)
        except EnquiryError as exc:
            raise UserError(str(exc)) from None
    out.write(f"{row['ref']} closed\n")
    return 0


def _export(args: argparse.Namespace, settings: Settings, out: IO[str]) -> int:
    from bot.enquiries import export_csv, export_jsonl, list_enquiries

    writer: Callable[[Any, IO[str]], int] = export_csv if args.format == "csv" else export_jsonl
    with open_db(settings) as db:
        rows = list_enquiries(db, "all")
    if not args.output:
        writer(rows, out)
        return 0
    path = Path(args.output)
    try:
        # 0600 whatever the umask (an export is personal data); an existing file keeps
        # its owner's choice. newline="": the csv module writes its own CRLF line ends.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            count = writer(rows, handle)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None
    print(f"{_count(count, 'enquiry', 'enquiries')} written to {path}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action; user errors become one line on stderr and exit 1."""
    try:
        settings = settings_from_args(args)
        return int(args.handler(args, settings, sys.stdout))
    except UserError as exc:
        return fail(str(exc))
