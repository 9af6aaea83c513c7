"""`clusterbot web` and `clusterbot run` with [web] enabled, as an operator starts them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from telegram_standin import BotApiStandIn

from tests.web_support import free_port

ROOT = Path(__file__).resolve().parent.parent


def start(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "CLUSTERBOT_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(base: str, process: subprocess.Popen[bytes], limit: float = 60.0) -> dict:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        try:
            response = httpx.get(f"{base}/healthz", timeout=5)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the web chat did not answer /healthz")


def stop(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    return process.returncode, out.decode("utf-8", "replace")


def test_clusterbot_web_serves_the_page_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "c.toml").write_text(f"[web]\nport = {port}\n", encoding="utf-8")
    process = start(["web", "--config", "c.toml"], tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(base, process)["database"] == "ok"
        page = httpx.get(f"{base}/chat", timeout=30)
        assert page.status_code == 200 and "chat.js" in page.text
        reply = httpx.post(
            f"{base}/chat/api/message",
            json={"text": "What is the budget?"},
            headers={"Origin": base},
            timeout=30,
        )
        assert reply.status_code == 200
    finally:
        code, out = stop(process)
    assert code == 0, out
    assert f"web chat on {base}/chat" in out
    # The defaults of `clusterbot chat`: data under ./var beside the command.
    assert (tmp_path / "var" / "clusterbot.sqlite3").exists()


def test_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "c.toml").write_text(f"[web]\nport = {port}\n", encoding="utf-8")
        process = start(["web", "--config", "c.toml"], tmp_path)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    text = out.decode()
    assert f"cannot listen on 127.0.0.1:{port}" in text and "web.port" in text
    assert "Traceback" not in text


def test_a_lost_database_is_refused_unless_told_new_database(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    (data / "clusterbot.instance").write_text('{"last_enquiry_id": 7}\n', "utf-8")
    (tmp_path / "c.toml").write_text(f"[web]\nport = {free_port()}\n", encoding="utf-8")
    process = start(["web", "--config", "c.toml"], tmp_path)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    lines = out.decode().strip().splitlines()
    assert len(lines) == 1 and "no database at" in lines[0] and "--new-database" in lines[0]
    assert not (data / "clusterbot.sqlite3").exists()
    process = start(["web", "--config", "c.toml", "--new-database"], tmp_path)
    try:
        wait_healthy(f"http://127.0.0.1:{_port(tmp_path)}", process)
    finally:
        code, _ = stop(process)
    assert code == 0 and (data / "clusterbot.sqlite3").exists()


def _port(tmp_path: Path) -> int:
    return int((tmp_path / "c.toml").read_text(encoding="utf-8").split("port = ")[1])


@pytest.fixture
def api() -> Iterator[BotApiStandIn]:
    with BotApiStandIn() as standin:
        yield standin


def test_clusterbot_run_serves_the_web_chat_when_enabled(
    tmp_path: Path, api: BotApiStandIn
) -> None:
    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(
        f'language = "en"\ndata_dir = "{tmp_path / "var"}"\n\n'
        f'[telegram]\ntoken = "{api.token}"\nbase_url = "{api.base_url}"\n\n'
        f'[smtp]\nhost = "embedded"\n\n[web]\nenabled = true\nport = {port}\n',
        encoding="utf-8",
    )
    process = start(["run", "--config", str(config)], ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        health = wait_healthy(base, process)
        assert health["status"] == "ok"
        api.push_message(11, "What is the deadline?")
        deadline = time.monotonic() + 60
        while not wait_healthy(base, process)["telegram"]["last_contact"]:
            assert time.monotonic() < deadline, "no Telegram contact reported"
            time.sleep(0.05)
    finally:
        code, out = stop(process)
    assert code == 0, out
    assert "web chat on" in out
