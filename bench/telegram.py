"""Telegram benchmark: our bot vs a bare python-telegram-bot echo bot, same stand-in, same run.

Run: .venv/bin/python bench/telegram.py [--users 500] [--rounds 5] [--limits] [--latency MS]
     [--profile DIR]

Each bot runs as its own process (`python -m bot run` for ours) against the local Bot API
stand-in (tests/telegram_standin.py) in this process. N users each send one FAQ question at
once; the stand-in timestamps every pushed update and every sendMessage, so latency is
"update available" -> "reply received" and throughput is replies per second from the first
push to the last reply. Our bot does everything it does in production: journal each update
(SQLite, synchronous=FULL), the engine (FAQ matching, session), the durable reply row, HTML.

With --rounds N (default 5) the bots run alternately N times each and the best round of each
is compared (the machine may be shared).

Telegram's flood limits (30 messages/s overall) would cap both bots alike and measure only
the limiter, so by default ours runs with the settings `[telegram] max_messages_per_second
= 0` and `max_messages_per_chat_per_second = 0` (no limit, as against a local Bot API
server); --limits keeps the defaults (30/s overall, 1/s per chat; the echo bot has none) to
show the real pace. --latency adds a delay to every stand-in answer, like a network.

The machine's load average is printed beside the figures (compare ratios of one run, not
figures of runs on a busier machine). --profile DIR samples both bots while they answer the
load with py-spy (a dev dependency) and writes DIR/<bot>-<round>.txt (collapsed stacks: one
line per stack and its sample count; flamegraph.pl or speedscope read them) and prints each
bot's busiest functions; nothing inside the bots changes.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from telegram_standin import BotApiStandIn  # noqa: E402

QUESTIONS = (
    "What is the total budget of the call?",
    "When is the deadline?",
    "Who can apply?",
    "What is ClusterXchange?",
    "What is the funding rate?",
    "Qual è la scadenza per presentare la proposta?",
    "Quanto è il contributo massimo?",
    "Quali paesi sono ammissibili?",
)

ECHO_BOT = textwrap.dedent(
    """
    import sys
    from telegram import Update
    from telegram.ext import Application, ContextTypes, MessageHandler, filters

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        \"\"\"Echo the user message.\"\"\"
        await update.message.reply_text(update.message.text)

    app = Application.builder().token(sys.argv[2]).base_url(sys.argv[1]).build()
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    app.run_polling(poll_interval=0.0, timeout=10)
    """
)


@dataclass
class Result:
    """One bot's run."""

    name: str
    replies: int
    seconds: float
    latencies: list[float]
    # CPU seconds the bot's process used for the load (less sensitive to a busy machine).
    cpu: float = 0.0
    # CPU seconds of this process (mostly the stand-in answering the bot) meanwhile.
    standin_cpu: float = 0.0

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds per reply."""
        return 1000 * self.cpu / self.replies if self.replies else 0.0

    @property
    def rate(self) -> float:
        """Replies per second."""
        return self.replies / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        """Latency percentile in milliseconds."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "CLUSTERBOT_"))}
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the bot until stopped (SIGINT makes it write `out`)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy (a dev dependency)")
    argv = [spy, "record", "--format", "raw", "--rate", "250", "--output", str(out)]
    process = subprocess.Popen(
        [*argv, "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    time.sleep(1.0)  # attached before the load starts
    return process


def _stop_profiler(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def hot_functions(stacks: Path, top: int = 20) -> list[tuple[float, str]]:
    """The functions with most samples on the stack (inclusive share), from py-spy's raw
    file; the frames under every sample (the event loop, the entry point) left out."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        # "Function (path/to/file.py:123)" -> "Function (file.py)"
        names = {re.sub(r" \((?:.*/)?([^/:]+)(?::\d+)?\)$", r" (\1)", f) for f in stack.split(";")}
        inclusive.update(dict.fromkeys(names, int(count)))
    ranked = [(n, f) for f, n in inclusive.most_common() if n < 0.98 * total]
    return [(100 * n / total, f) for n, f in ranked[:top]]


def run_one(
    name: str,
    users: int,
    tmp: Path,
    *,
    limits: bool,
    latency: float,
    profile: Path | None = None,
) -> Result:
    """Start one bot against a fresh stand-in, send the load, collect replies."""
    with BotApiStandIn(latency=latency) as api:
        if name == "clusterbot":
            config = tmp / "clusterbot.toml"
            flood = (
                ""
                if limits
                else "max_messages_per_second = 0\nmax_messages_per_chat_per_second = 0\n"
            )
            config.write_text(
                f'language = "en"\ndata_dir = "{tmp / "var"}"\n\n'
                f'[smtp]\nhost = "embedded"\n\n'
                f'[telegram]\ntoken = "{api.token}"\nbase_url = "{api.base_url}"\n{flood}',
                encoding="utf-8",
            )
            argv = [
                sys.executable,
                "-m",
                "bot",
                "run",
                "--config",
                str(config),
                "--log-level",
                "WARNING",
            ]
        else:
            argv = [sys.executable, "-c", ECHO_BOT, api.base_url, api.token]
        process = _spawn(argv, tmp / f"{name}.log")
        try:
            deadline = time.monotonic() + 60
            while api.polls_started == 0:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not start; see {tmp / (name + '.log')}")
                time.sleep(0.01)
            time.sleep(0.3)
            spy = _start_profiler(process.pid, profile) if profile is not None else None
            cpu_before = _cpu_seconds(process.pid)
            own_before = _own_cpu()
            chats = [100_000 + i for i in range(users)]
            pushed = {}
            for i, chat in enumerate(chats):
                update_id = api.push_message(chat, QUESTIONS[i % len(QUESTIONS)])
                pushed[chat] = api.pushed_at[update_id]
            start = min(pushed.values())
            deadline = time.monotonic() + 300
            with api._cond:
                while len(api.first_reply_at) < users and time.monotonic() < deadline:
                    api._cond.wait(0.5)
                firsts = {c: api.first_reply_at[c] for c in chats if c in api.first_reply_at}
            if len(firsts) < users:
                raise SystemExit(f"{name}: only {len(firsts)}/{users} replies")
            cpu = _cpu_seconds(process.pid) - cpu_before
            standin_cpu = _own_cpu() - own_before
            if spy is not None:
                _stop_profiler(spy)
            latencies = [firsts[chat] - pushed[chat] for chat in chats]
            rejected = api.rejected()
            if rejected:
                raise SystemExit(f"{name}: {len(rejected)} requests rejected by the stand-in")
            return Result(name, users, max(firsts.values()) - start, latencies, cpu, standin_cpu)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    """Run both bots and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--limits", action="store_true", help="keep our flood limits on")
    parser.add_argument("--latency", type=float, default=0.0, help="ms added to each answer")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating runs per bot; the best one counts"
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="sample both bots with py-spy into DIR"
    )
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    runs: dict[str, list[Result]] = {"clusterbot": [], "ptb-echo": []}
    for number in range(1, args.rounds + 1):
        # Alternating, so a noisy neighbour on the machine hurts both alike.
        for name in runs:
            out = args.profile / f"{name}-{number}.txt" if args.profile is not None else None
            with tempfile.TemporaryDirectory() as tmp:
                runs[name].append(
                    run_one(
                        name,
                        args.users,
                        Path(tmp),
                        limits=args.limits,
                        latency=args.latency / 1000,
                        profile=out,
                    )
                )
    load_after = os.getloadavg()
    for name, done in runs.items():
        print(f"{name:<12} rounds (replies/s): " + ", ".join(f"{r.rate:.0f}" for r in done))
    results = [max(done, key=lambda r: r.rate) for done in runs.values()]
    ours, echo = results
    print(f"Telegram: {args.users} users x 1 FAQ question, local Bot API stand-in")
    print(
        f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, on "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"{'bot':<12} {'replies/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'total s':>8} "
        f"{'CPU ms/reply':>13} {'stand-in CPU':>13}"
    )
    for r in results:
        standin = min(1000 * x.standin_cpu / x.replies for x in runs[r.name])
        print(
            f"{r.name:<12} {r.rate:>10.1f} {r.pct(0.5):>9.1f} {r.pct(0.99):>9.1f} "
            f"{r.seconds:>8.2f} {min(x.cpu_ms for x in runs[r.name]):>13.2f} {standin:>13.2f}"
        )
    ratio = ours.rate / echo.rate if echo.rate else float("inf")
    print(f"ratio clusterbot / echo: {ratio:.2f} (acceptance >= 0.6, aim 0.8)")
    floor = 10 * 30
    verdict = "ok" if ours.rate >= floor or args.limits else "BELOW"
    print(f"clusterbot replies/s vs 10x Telegram's 30/s ({floor}): {verdict}")
    best_cpu = {name: min(x.cpu_ms for x in done) for name, done in runs.items()}
    cpu_ratio = best_cpu["ptb-echo"] / best_cpu["clusterbot"] if best_cpu["clusterbot"] else 0.0
    print(f"CPU ratio echo / clusterbot (replies per CPU second, ours vs echo's): {cpu_ratio:.2f}")
    median_ratio = statistics.median(ours.latencies) / statistics.median(echo.latencies)
    print(f"median latency ratio: {median_ratio:.2f}")
    if args.profile is not None:
        for name in runs:
            stacks = args.profile / f"{name}-{args.rounds}.txt"
            if not stacks.exists():
                continue
            print(f"\n{name}: busiest functions (share of samples on the stack), {stacks}")
            for share, function in hot_functions(stacks):
                print(f"  {share:5.1f}%  {function}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
