"""The kept ranking index (bot/knowledge/index_cache.py): read back instead of rebuilt, the
same answers, a new one after any edit, and never trusted or fatal when it is wrong."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

import pytest

from bot.knowledge import KnowledgeBase
from bot.knowledge.index_cache import default_folder
from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = (
    "qual è il budget del bando?",
    "When was the deadline, and who can apply?",
    "Can a Swiss cluster be the coordinator of a partnership?",
    "ciao",
)


@pytest.fixture
def knowledge(tmp_path: Path) -> Path:
    """A copy of the shipped knowledge folder, free to edit."""
    folder = tmp_path / "knowledge"
    shutil.copytree(ROOT / "config", folder)
    return folder


def kept(folder: Path) -> list[Path]:
    return sorted(folder.glob("matcher-*.pickle"))


def replies(kb: KnowledgeBase) -> list[tuple[str | None, float, str, str]]:
    return [
        (answer.faq_id, answer.score, answer.lang, answer.text)
        for answer in map(kb.answer, QUESTIONS)
    ]


def start(folder: Path, cache: Path, min_score: float | None = None) -> None:
    """A start that needs the index, as its first question does."""
    assert KnowledgeBase.load(folder, min_score, index_cache=cache).matcher.documents


def refuse_to_build(kb: KnowledgeBase) -> None:
    raise AssertionError("the index was built again instead of read")


def test_a_second_start_reads_the_index_and_answers_the_same(
    knowledge: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache" / "clusterbot"
    expected = replies(KnowledgeBase.load(knowledge))
    assert replies(KnowledgeBase.load(knowledge, index_cache=cache)) == expected
    assert len(kept(cache)) == 1
    monkeypatch.setattr(KnowledgeBase, "_build_matcher", refuse_to_build)
    assert replies(KnowledgeBase.load(knowledge, index_cache=cache)) == expected


def test_the_kept_index_and_its_folders_are_private(knowledge: Path, tmp_path: Path) -> None:
    cache = tmp_path / "home" / ".cache" / "clusterbot"
    start(knowledge, cache)
    (path,) = kept(cache)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    # Parents created on the way are private too, not the default 0755.
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    assert not list(cache.glob(".*"))


def test_an_edit_builds_a_new_index_in_place_of_the_old(knowledge: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    start(knowledge, cache)
    (old,) = kept(cache)
    faq = knowledge / "faq.yaml"
    faq.write_text(faq.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    start(knowledge, cache)
    (new,) = kept(cache)
    assert new != old
    # Another threshold is another index too.
    start(knowledge, cache, 0.3)
    assert kept(cache) != [new]


def test_two_knowledge_folders_keep_one_index_each(knowledge: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    second = tmp_path / "second"
    shutil.copytree(knowledge, second)
    start(knowledge, cache)
    start(second, cache)
    assert len(kept(cache)) == 2


@pytest.mark.parametrize("damage", [b"", b"not a pickle", b"\x80\x05K\x01."])
def test_a_damaged_index_is_rebuilt_without_an_error(
    knowledge: Path, tmp_path: Path, damage: bytes
) -> None:
    cache = tmp_path / "cache"
    expected = replies(KnowledgeBase.load(knowledge, index_cache=cache))
    (path,) = kept(cache)
    path.write_bytes(damage)
    assert replies(KnowledgeBase.load(knowledge, index_cache=cache)) == expected
    assert path.stat().st_size > 1000


def test_an_index_others_could_write_is_not_read(
    knowledge: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    start(knowledge, cache)
    assert len(kept(cache)) == 1
    os.chmod(cache, 0o777)
    calls = []
    original = KnowledgeBase._build_matcher

    def counted(kb: KnowledgeBase):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(kb)

    monkeypatch.setattr(KnowledgeBase, "_build_matcher", counted)
    start(knowledge, cache)
    assert calls == [1]


def test_an_unwritable_cache_folder_only_costs_a_rebuild(
    knowledge: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bot.knowledge.index_cache"):
        kb = KnowledgeBase.load(knowledge, index_cache=blocker / "cache")
        assert kb.answer("qual è il budget del bando?").topic == "budget"
    assert "index cache not written" in caplog.text


def test_settings_choose_the_users_cache_folder_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_folder() == tmp_path / "xdg" / "clusterbot"
    assert KnowledgeBase.from_settings(Settings(data_dir=tmp_path / "data")).matcher.documents
    assert len(kept(tmp_path / "xdg" / "clusterbot")) == 1
    # The cache holds no personal data: it stays out of data_dir, which is not created.
    assert not (tmp_path / "data").exists()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "off"))
    off = Settings.model_validate({"faq": {"index_cache": False}})
    assert KnowledgeBase.from_settings(off).matcher.documents
    assert not (tmp_path / "off").exists()
    # A relative XDG_CACHE_HOME is ignored, as the XDG specification asks.
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    assert default_folder() == Path.home() / ".cache" / "clusterbot"
