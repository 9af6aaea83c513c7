"""Shared fixtures: the repository paths and a clean environment for settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from telegram_standin import BotApiStandIn

ROOT = Path(__file__).resolve().parent.parent


# Timing belongs in bench/, not in tests: no per-example deadline, and no "too slow"
# failures when CI shares its two cores with other work.
settings.register_profile(
    "clusterbot",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("clusterbot")


@pytest.fixture
def repo_root() -> Path:
    """The checkout's root folder."""
    return ROOT


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[BotApiStandIn]:
    """A fresh Bot API stand-in per test; no request may be rejected on its merits."""
    # As `clusterbot run` does: PTB's timedelta durations, without its deprecation warning.
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    with BotApiStandIn() as standin:
        yield standin
        assert standin.rejected() == [], [(r.method, r.response) for r in standin.rejected()]


@pytest.fixture(scope="session")
def _index_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder per test worker: built indexes are shared between its tests, never
    written to the developer's own ~/.cache."""
    return tmp_path_factory.mktemp("cache-home")


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, _index_cache_home: Path) -> None:
    """Tests never pick up the developer's own settings or secrets."""
    for name in (
        "CLUSTERBOT_CONFIG",
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_WEBHOOK_SECRET",
        "SMTP_PASSWORD",
        "IMAP_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(_index_cache_home))
