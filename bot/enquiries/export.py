"""Enquiries as records for export and --json: JSON lines and a spreadsheet-safe CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from typing import IO, Any

EXPORT_COLUMNS = (
    "id",
    "ref",
    "status",
    "channel",
    "lang",
    "name",
    "email",
    "organisation",
    "country",
    "question",
    "faq_history",
    "created_at",
    "forwarded_at",
    "answered_at",
    "answered_by",
    "answer",
    "closed_at",
    "closed_by",
    "close_note",
    "reminder_count",
    "last_reminder_at",
    "erased_at",
)
# Cells a spreadsheet would run as a formula ("=HYPERLINK(...)") get a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def public_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """An enquiry for export and --json: the export columns, faq_history as a list."""
    record = {column: row.get(column) for column in EXPORT_COLUMNS}
    try:
        history = json.loads(row.get("faq_history") or "[]")
    except (TypeError, ValueError):
        history = []
    record["faq_history"] = history if isinstance(history, list) else []
    return record


def export_jsonl(rows: Iterable[Mapping[str, Any]], stream: IO[str]) -> int:
    """Write one JSON object per enquiry; returns how many were written."""
    count = 0
    for row in rows:
        stream.write(json.dumps(public_record(row), ensure_ascii=False) + "\n")
        count += 1
    return count


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def export_csv(rows: Iterable[Mapping[str, Any]], stream: IO[str]) -> int:
    """Write a CSV with a header row; faq_history is one cell, questions joined by ' | '."""
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for row in rows:
        record = public_record(row)
        record["faq_history"] = " | ".join(str(item) for item in record["faq_history"])
        writer.writerow([_csv_cell(record[column]) for column in EXPORT_COLUMNS])
        count += 1
    return count
