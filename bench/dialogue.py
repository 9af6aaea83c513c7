"""Dialogue engine benchmark: scripted conversations, steps per second and p50/p99 per step.

Run: .venv/bin/python bench/dialogue.py [--users N]

Each simulated user has one scripted conversation: /start, FAQ questions in Italian and
English, topic buttons, then a whole enquiry form (/contact, five fields, consent, send).
Every step is one Engine.handle() call, including its SQLite commit. Side by side, in the same
run and on the same scripts:
  (a) the engine on a temporary SQLite file (WAL, synchronous=FULL: the real configuration);
  (b) the engine on an in-memory SQLite database (same code, no disk, no fsync);
  (c) the matcher alone (KnowledgeBase.answer on the same free-text questions);
  (d) the storage alone: one session upsert + commit per step on a file with the same pragmas
      (its fsync is the floor of (a); on a busy disk both slow down together).
The table gives steps/s (from the summed step latencies), p50 and p99 per kind of step; the
lines below it give the same per scenario: the FAQ chat, and the whole enquiry form whose
last step ("send") composes the secretariat's e-mail and commits it with the enquiry.

The summary for (a) then separates three figures, because one step dominates the form:
  * all steps: the overall rate (wall clock) - the figure the target is judged on;
  * form steps without the submit: /contact, the five fields, consent;
  * the submit step alone: its p50/p99, and how much of it is composing the e-mail
    (bot.mail.compose, stdlib e-mail serialisation) measured on its own.
The target is >= 1000 steps/s for (a), all steps. Nothing is asserted; the numbers are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.dialogue.engine import Engine, Event  # noqa: E402
from bot.knowledge import KnowledgeBase  # noqa: E402
from bot.resources import config_dir  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.settings.load import settings_from_mapping  # noqa: E402
from bot.storage import migrations, open_database  # noqa: E402

TARGET_STEPS_PER_SECOND = 1000

QUESTIONS = (
    "Qual è il budget totale del bando?",
    "What is the deadline?",
    "Chi può partecipare?",
    "How much is the maximum grant per project?",
    "Can I bring my dog to the info day?",
)
# (kind, value, args); free text is marked "faq" so the matcher-only baseline can replay it.
Step = tuple[str, str, str]
SCRIPT: tuple[Step, ...] = (
    ("command", "start", ""),
    *(("faq", question, "") for question in QUESTIONS),
    ("button", "faq:deadline", ""),
    ("button", "faq:countries", ""),
    ("command", "contact", ""),
    ("text", "Maria Rossi", ""),
    ("text", "maria.rossi@example.org", ""),
    ("text", "Cluster Lombardia", ""),
    ("button", "c:IT", ""),
    ("text", "How many partners must a consortium have, and from how many countries?", ""),
    ("button", "consent:yes", ""),
    ("button", "send", ""),
    ("command", "status", ""),
)


@dataclass
class Timings:
    """Latencies (microseconds) of one configuration, per step kind and overall."""

    name: str
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    by_scenario: dict[str, list[float]] = field(default_factory=dict)
    total_s: float = 0.0

    def add(self, kind: str, micros: float, scenario: str = "") -> None:
        """Record one step."""
        self.by_kind.setdefault(kind, []).append(micros)
        if scenario:
            self.by_scenario.setdefault(scenario, []).append(micros)

    @property
    def all(self) -> list[float]:
        """Every step's latency."""
        return [value for values in self.by_kind.values() for value in values]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def make_settings(data_dir: Path) -> Settings:
    """Limits raised so that the benchmark measures work, not polite refusals."""
    return settings_from_mapping(
        {
            "data_dir": str(data_dir),
            "limits": {"messages_per_minute": 10000},
            "enquiries": {"max_per_day": 1000},
            "telegram": {"admin_chat_id": -100},
        },
        "bench",
    )


def memory_database() -> sqlite_utils.Database:
    """A migrated in-memory database."""
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    return db


def drive(timings: Timings, engine: Engine, first: int, count: int) -> None:
    """Run the script once for each of `count` users; time every Engine.handle() call."""
    started = time.perf_counter()
    for number in range(first, first + count):
        user = f"bench-{number}"
        hint = "it" if number % 2 else "en"
        for index, (kind, value, args) in enumerate(SCRIPT):
            if kind in ("text", "faq"):
                event = Event("console", user, "text", text=value, lang_hint=hint)
            elif kind == "button":
                event = Event("console", user, "button", button_id=value, lang_hint=hint)
            else:
                event = Event("console", user, "command", command=value, args=args, lang_hint=hint)
            begin = time.perf_counter_ns()
            replies = engine.handle(event)
            micros = (time.perf_counter_ns() - begin) / 1000
            timings.add(_label(kind, value), micros, _scenario(index))
            if not replies:
                raise SystemExit(f"{timings.name}: no reply to {kind} {value!r}")
    timings.total_s += time.perf_counter() - started


FORM_START = next(i for i, step in enumerate(SCRIPT) if step[1] == "contact")
FORM_END = next(i for i, step in enumerate(SCRIPT) if step[1] == "send")


def _scenario(index: int) -> str:
    if FORM_START <= index <= FORM_END:
        return "whole enquiry form (/contact .. send)"
    return "FAQ chat and commands"


FORM_KIND = "form step"
SUBMIT_KIND = "confirm (submit)"


def _label(kind: str, value: str) -> str:
    if kind == "faq":
        return "faq question"
    if value == "send":
        return SUBMIT_KIND
    if kind == "button" and value.startswith("faq:"):
        return "topic button"
    if kind == "text" or value in ("c:IT", "consent:yes", "contact"):
        return FORM_KIND
    return "command"


def matcher_only(timings: Timings, kb: KnowledgeBase, first: int, count: int) -> None:
    """KnowledgeBase.answer on the script's free-text questions alone."""
    started = time.perf_counter()
    for number in range(first, first + count):
        lang = "it" if number % 2 else "en"
        for kind, value, _ in SCRIPT:
            if kind != "faq":
                continue
            begin = time.perf_counter_ns()
            kb.answer(value, lang=lang)
            timings.add("faq question", (time.perf_counter_ns() - begin) / 1000)
    timings.total_s += time.perf_counter() - started


def commit_only(timings: Timings, db: sqlite_utils.Database, first: int, count: int) -> None:
    """The storage floor: one session upsert and commit per step, same file and pragmas."""
    from bot.storage import transaction

    started = time.perf_counter()
    for number in range(first, first + count):
        for index, (kind, value, _) in enumerate(SCRIPT):
            begin = time.perf_counter_ns()
            with transaction(db):
                db.conn.execute(
                    "INSERT INTO sessions (channel, user_id, lang, state, updated_at) "
                    "VALUES ('bench', ?, 'en', ?, 'now') ON CONFLICT (channel, user_id) "
                    "DO UPDATE SET state = excluded.state",
                    (f"bench-{number}", value),
                )
            micros = (time.perf_counter_ns() - begin) / 1000
            timings.add(_label(kind, value), micros, _scenario(index))
    timings.total_s += time.perf_counter() - started


def print_table(results: Sequence[Timings]) -> None:
    """One row per step kind: steps/s, p50 and p99 (ms) per configuration."""
    kinds = ["all steps", *sorted({kind for r in results for kind in r.by_kind})]
    width = 33  # "  " + n(6) steps/s(9) p50(7) p99(7) with single spaces
    header = f"{'step':<18}" + "".join(f"{r.name:>{width}}" for r in results)
    columns = f"  {'n':>6} {'steps/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
    print(header)
    print(f"{'':<18}" + columns * len(results))
    print("-" * len(header))
    for kind in kinds:
        line = f"{kind:<18}"
        for result in results:
            values = result.all if kind == "all steps" else result.by_kind.get(kind, [])
            if not values:
                line += f"{'-':>{width}}"
                continue
            rate = len(values) / (sum(values) / 1e6)
            line += (
                f"  {len(values):>6} {rate:>9.0f} {percentile(values, 0.5) / 1000:>7.2f} "
                f"{percentile(values, 0.99) / 1000:>7.2f}"
            )
        print(line)


def _rate(values: Sequence[float]) -> float:
    """Steps per second from summed latencies (microseconds)."""
    return len(values) / (sum(values) / 1e6) if values else 0.0


def _stats(values: Sequence[float]) -> str:
    return (
        f"{_rate(values):>6.0f} steps/s  p50 {percentile(values, 0.5) / 1000:5.2f} ms  "
        f"p99 {percentile(values, 0.99) / 1000:5.2f} ms  ({len(values)} steps)"
    )


def compose_only(db: sqlite_utils.Database, settings: Settings, limit: int = 200) -> list[float]:
    """Latencies (microseconds) of composing the secretariat e-mail and its delivery alone,
    on enquiries the run stored: the part of the submit step that is not the engine's."""
    from bot.mail.compose import enquiry_mail, mail_delivery

    cursor = db.conn.execute("SELECT * FROM enquiries ORDER BY id LIMIT ?", (limit,))
    names = [column[0] for column in cursor.description]
    found = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    times: list[float] = []
    for row in found:
        begin = time.perf_counter_ns()
        mail_delivery(enquiry_mail(settings, row), "enquiry", row["id"])
        times.append((time.perf_counter_ns() - begin) / 1000)
    return times


def print_summary(real: Timings, compose: Sequence[float]) -> None:
    """All steps, form steps without the submit, and the submit alone, for the real setup."""
    overall = len(real.all) / real.total_s
    form = real.by_kind.get(FORM_KIND, [])
    submit = real.by_kind.get(SUBMIT_KIND, [])
    whole = form + submit
    print(f"\n{real.name} (WAL, synchronous=FULL), SQLite commit included in every step:")
    print(
        f"  all steps                 {overall:>6.0f} steps/s wall clock; from step latencies: "
        f"{_stats(real.all)}"
    )
    print(f"  form steps without submit {_stats(form)}")
    print(f"  form steps with submit    {_stats(whole)}")
    if submit:
        share = 100 * sum(submit) / sum(whole) if whole else 0.0
        line = (
            f"  submit step alone         p50 {percentile(submit, 0.5) / 1000:.2f} ms, "
            f"p99 {percentile(submit, 0.99) / 1000:.2f} ms, mean "
            f"{statistics.fmean(submit) / 1000:.2f} ms: {share:.0f}% of the form's time "
            f"in 1 of {len(SCRIPT[FORM_START : FORM_END + 1])} form steps"
        )
        print(line)
    if compose:
        part = (
            f", about {100 * statistics.fmean(compose) / statistics.fmean(submit):.0f}% of "
            "the submit's mean"
            if submit
            else ""
        )
        print(
            f"    of which composing the e-mail (bot.mail.compose, measured alone): "
            f"p50 {percentile(compose, 0.5) / 1000:.2f} ms, "
            f"mean {statistics.fmean(compose) / 1000:.2f} ms{part}"
        )
    verdict = "meets" if overall >= TARGET_STEPS_PER_SECOND else "MISSES"
    print(
        f"\ntarget: >= {TARGET_STEPS_PER_SECOND} steps/s over all steps, commit included: "
        f"{overall:.0f} steps/s wall clock, {verdict} the target."
    )
    if form and submit:
        print(
            f"  (form steps without the submit: {_rate(form):.0f} steps/s; with it: "
            f"{_rate(whole):.0f} steps/s. These explain the overall figure; they do not "
            "replace it.)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the four configurations, interleaved, and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300, help="scripted users (default 300)")
    parser.add_argument(
        "--rounds", type=int, default=10, help="interleaved rounds (default 10), see below"
    )
    args = parser.parse_args(argv)
    kb = KnowledgeBase.load(config_dir())
    with tempfile.TemporaryDirectory(prefix="clusterbot-bench-") as folder:
        settings = make_settings(Path(folder))
        file_db = open_database(settings.database_path)
        memory_db = memory_database()
        floor_db = open_database(Path(folder) / "floor.sqlite3")
        on_file = Engine(file_db, kb, settings)
        in_memory = Engine(memory_db, kb, settings)
        results = [
            Timings("engine + SQLite file"),
            Timings("engine + :memory:"),
            Timings("matcher only"),
            Timings("commit only"),
        ]
        # One warm-up user each: imports, template compilation, first-page faults.
        drive(Timings("warm-up"), on_file, -1, 1)
        drive(Timings("warm-up"), in_memory, -1, 1)
        # The configurations take turns, so a disk or CPU busy with other work slows them
        # all alike instead of whichever happened to run at that moment.
        rounds = max(1, min(args.rounds, args.users))
        for round_no in range(rounds):
            first = round_no * args.users // rounds
            count = (round_no + 1) * args.users // rounds - first
            drive(results[0], on_file, first, count)
            drive(results[1], in_memory, first, count)
            matcher_only(results[2], kb, first, count)
            commit_only(results[3], floor_db, first, count)
        compose = compose_only(file_db, settings)
        for db in (file_db, memory_db, floor_db):
            db.close()
    steps = len(SCRIPT) * args.users
    print(f"dialogue benchmark: {args.users} users x {len(SCRIPT)} steps = {steps} steps each\n")
    print_table(results)
    print()
    for scenario in sorted(results[0].by_scenario):
        parts = []
        for result in (results[0], results[1], results[3]):
            values = result.by_scenario[scenario]
            parts.append(
                f"{result.name}: {len(values) / (sum(values) / 1e6):.0f} steps/s, "
                f"p50 {percentile(values, 0.5) / 1000:.2f} ms, "
                f"p99 {percentile(values, 0.99) / 1000:.2f} ms"
            )
        print(f"{scenario}: " + "; ".join(parts))
    print(
        f"\nwall clock, all steps: in-memory {len(results[1].all) / results[1].total_s:.0f} "
        f"steps/s; bare commits {len(results[3].all) / results[3].total_s:.0f}/s"
    )
    print_summary(results[0], compose)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
