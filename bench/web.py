"""Web chat benchmark: the web channel vs the console channel, same engine, same run.

Run: .venv/bin/python bench/web.py [--messages 300] [--rounds 3] [--users 16]

Both channels run in this process on a fresh data folder each round, with the real app
(SQLite with synchronous=FULL, the engine, the embedded mail store) and the same FAQ
questions:

- console: `converse()` (what `clusterbot chat` runs) reading a real pipe; latency is "line
  written to the pipe" -> "reply printed".
- web: uvicorn on a loopback port, httpx as the browser: POST /chat/api/message, one
  session; latency is the HTTP round trip (JSON in, engine, transcript rows, JSON out).
- web xN: the same with N sessions posting at once (messages/s under concurrency).

Flood limits are off in both (limits.messages_per_minute = 10000 and no HTTP limits), so
the numbers are the channels' own cost. Rounds alternate; the best round of each is shown
(the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bot.app import App  # noqa: E402
from bot.channels.console import _Output, converse  # noqa: E402
from bot.channels.web.limits import SlidingWindow  # noqa: E402
from bot.dialogue.engine import Engine  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.settings.load import settings_from_mapping  # noqa: E402
from tests.web_support import running_web  # noqa: E402

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


def bench_settings(data: Path) -> Settings:
    return settings_from_mapping(
        {"data_dir": str(data), "limits": {"messages_per_minute": 10000}, "web": {"port": 0}},
        "bench",
    )


class _TimedStream:
    """The console's stdout: notes when a reply (a non-empty write) is printed."""

    def __init__(self, on_reply: Callable[[], None]) -> None:
        self.on_reply = on_reply

    def write(self, text: str) -> int:
        if text.strip():
            self.on_reply()
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


async def console_round(data: Path, count: int) -> list[float]:
    settings = bench_settings(data)
    latencies: list[float] = []
    async with App(settings) as app:
        assert app.db is not None
        engine = Engine(app.db, app.kb, settings, rate_limit=False)
        replied = asyncio.Event()
        loop = asyncio.get_running_loop()
        out = _Output(_TimedStream(lambda: loop.call_soon_threadsafe(replied.set)))  # type: ignore[arg-type]
        read_fd, write_fd = os.pipe()
        stdin = os.fdopen(read_fd, "rb", buffering=0)
        talk = asyncio.ensure_future(converse(engine, user_id="bench", stdin=stdin, output=out))
        await asyncio.wait_for(replied.wait(), 60)  # the greeting
        for n in range(count):
            replied.clear()
            start = time.perf_counter()
            os.write(write_fd, (QUESTIONS[n % len(QUESTIONS)] + "\n").encode())
            await asyncio.wait_for(replied.wait(), 60)
            latencies.append(time.perf_counter() - start)
        os.close(write_fd)
        await asyncio.wait_for(talk, 60)
        stdin.close()
    return latencies


def _open_limits(run: Any) -> None:
    big = 10**9
    run.channel.chat_api.posts_per_session = SlidingWindow(big, 60.0)
    run.channel.chat_api.posts_per_address = SlidingWindow(big, 60.0)
    run.channel.chat_api.new_sessions = SlidingWindow(big, 60.0)


async def _post(
    http: httpx.AsyncClient, base: str, payload: dict[str, str], token: str | None
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Origin": base}
    if token:
        headers["X-Chat-Session"] = token
    response = await http.post("/chat/api/message", content=json.dumps(payload), headers=headers)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def web_round(data: Path, count: int, users: int) -> tuple[list[float], float]:
    """Sequential latencies of one session, and messages/s of `users` sessions at once."""
    settings = bench_settings(data)
    async with (
        running_web(settings) as run,
        httpx.AsyncClient(base_url=run.base, timeout=60) as http,
    ):
        _open_limits(run)
        token = (await _post(http, run.base, {"command": "start"}, None))["session"]
        latencies: list[float] = []
        for n in range(count):
            start = time.perf_counter()
            await _post(http, run.base, {"text": QUESTIONS[n % len(QUESTIONS)]}, token)
            latencies.append(time.perf_counter() - start)
        tokens = [
            (await _post(http, run.base, {"command": "start"}, None))["session"]
            for _ in range(users)
        ]
        per_user = max(1, count // users)

        async def user(token: str) -> None:
            for n in range(per_user):
                await _post(http, run.base, {"text": QUESTIONS[n % len(QUESTIONS)]}, token)

        start = time.perf_counter()
        await asyncio.gather(*(user(t) for t in tokens))
        concurrent_rate = per_user * users / (time.perf_counter() - start)
    return latencies, concurrent_rate


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def summary(latencies: list[float]) -> tuple[float, float, float]:
    """(messages/s, p50 ms, p99 ms) of a sequential run."""
    return (
        len(latencies) / sum(latencies),
        statistics.median(latencies) * 1000,
        p99(latencies) * 1000,
    )


async def main(args: argparse.Namespace) -> None:
    best: dict[str, tuple[float, float, float]] = {}
    best_concurrent = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name in ("console", "web"):
                data = Path(tmp) / f"{name}-{round_}"
                if name == "console":
                    result = summary(await console_round(data, args.messages))
                else:
                    latencies, rate = await web_round(data, args.messages, args.users)
                    result = summary(latencies)
                    best_concurrent = max(best_concurrent, rate)
                if name not in best or result[0] > best[name][0]:
                    best[name] = result
                print(
                    f"round {round_ + 1} {name:8} {result[0]:7.1f} msg/s  "
                    f"p50 {result[1]:6.2f} ms  p99 {result[2]:6.2f} ms",
                    flush=True,
                )
    print()
    print(f"{args.messages} FAQ questions per channel, best of {args.rounds} rounds")
    print(f"{'channel':22} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, (rate, p50, p99_) in best.items():
        print(f"{name + ' (1 user)':22} {rate:8.1f} {p50:8.2f} {p99_:8.2f}")
    print(f"{f'web ({args.users} users at once)':22} {best_concurrent:8.1f} {'':>8} {'':>8}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="questions per channel")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--users", type=int, default=16, help="web sessions posting at once")
    asyncio.run(main(parser.parse_args()))
