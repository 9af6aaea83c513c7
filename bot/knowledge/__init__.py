"""The knowledge base: call facts, FAQ answers and the matcher, loaded from one folder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bot.knowledge.errors import KnowledgeError
from bot.knowledge.facts import LANGUAGES, Call, load_call, read_yaml
from bot.knowledge.faq import FaqEntry, call_status, load_faq, render_answer
from bot.knowledge.match import Matcher, detect_language

if TYPE_CHECKING:
    from bot.settings import Settings

CALL_FILE = "call.yaml"
FAQ_FILE = "faq.yaml"
RENDER_CACHE_SIZE = 1024

__all__ = ["Answer", "KnowledgeBase", "KnowledgeError", "detect_language"]


@dataclass(frozen=True)
class Answer:
    """The result of one look-up: faq_id is None when the bot should fall back."""

    faq_id: str | None
    score: float
    lang: str
    text: str


def _load_fallback_texts() -> dict[str, str]:
    from bot.resources import templates_dir

    path = templates_dir() / "ask" / "texts.yaml"
    data = read_yaml(path)
    texts = data.get("fallback") if isinstance(data, Mapping) else None
    if not isinstance(texts, Mapping) or any(
        not isinstance(texts.get(lang), str) for lang in LANGUAGES
    ):
        raise KnowledgeError([f"{path}: 'fallback' must have an 'it' and an 'en' text"])
    return {lang: str(texts[lang]).strip() for lang in LANGUAGES}


class KnowledgeBase:
    """Facts, FAQ entries and a matcher; answers free-text questions in it or en."""

    def __init__(
        self,
        call: Call,
        entries: tuple[FaqEntry, ...],
        min_score: float = 0.5,
        fallback: Mapping[str, str] | None = None,
        *,
        default_lang: str = "en",
        secretariat_email: str = "",
    ) -> None:
        self.call = call
        self.entries = entries
        self.by_id = {entry.id: entry for entry in entries}
        self.min_score = min_score
        self.matcher = Matcher(entries)
        self.fallback = dict(fallback) if fallback else _load_fallback_texts()
        self.default_lang = default_lang if default_lang in LANGUAGES else "en"
        self.secretariat_email = secretariat_email
        self._rendered: dict[tuple[str, str, bool, bool, int], str] = {}

    @classmethod
    def load(
        cls,
        directory: Path,
        min_score: float = 0.5,
        *,
        default_lang: str = "en",
        secretariat_email: str = "",
    ) -> KnowledgeBase:
        """Load call.yaml and faq.yaml from `directory`; raise KnowledgeError with every problem."""
        if not directory.is_dir():
            raise KnowledgeError([f"{directory}: knowledge folder not found (check knowledge_dir)"])
        call = load_call(directory / CALL_FILE)
        entries = load_faq(directory / FAQ_FILE, call)
        return cls(
            call,
            entries,
            min_score,
            default_lang=default_lang,
            secretariat_email=secretariat_email,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> KnowledgeBase:
        """The knowledge base the settings point at, with their threshold and language."""
        return cls.load(
            settings.resolved_knowledge_dir,
            settings.faq.min_score,
            default_lang=settings.language,
            secretariat_email=settings.secretariat.email,
        )

    def detect(self, question: str, lang: str | None = None) -> str:
        """The language to answer in: the one asked for, else the question's, else the default."""
        if lang in LANGUAGES:
            return lang
        return detect_language(question) or self.default_lang

    def match(self, question: str, lang: str | None = None) -> tuple[str | None, float]:
        """Best FAQ id and score; the id is None below the confidence threshold."""
        faq_id, score = self.matcher.best(question, lang)
        if faq_id is None or score < self.min_score:
            return None, score
        return faq_id, score

    def answer(self, question: str, lang: str | None = None, now: datetime | None = None) -> Answer:
        """Answer a question in `lang` (detected when None) at `now` (default: the current time)."""
        reply_lang = self.detect(question, lang)
        # The reply language may differ from the question's, so the matcher searches both.
        faq_id, score = self.match(question)
        if faq_id is None:
            return Answer(None, round(score, 4), reply_lang, self.fallback[reply_lang])
        text = self.render(faq_id, reply_lang, now)
        return Answer(faq_id, round(score, 4), reply_lang, text)

    def render(self, faq_id: str, lang: str, now: datetime | None = None) -> str:
        """One FAQ answer in `lang`, with the call status computed at `now`."""
        moment = now if now is not None else datetime.now(UTC)
        # An answer depends only on the call status at `moment`, which changes at most daily:
        # caching the rendered text saves Jinja2 and Babel work on every question.
        status = call_status(self.call, moment)
        key = (faq_id, lang, status.call_open, status.opening_ahead, status.days_left)
        text = self._rendered.get(key)
        if text is None:
            if len(self._rendered) >= RENDER_CACHE_SIZE:
                self._rendered.clear()
            extra = {"secretariat_email": self.secretariat_email}
            text = render_answer(self.by_id[faq_id], self.call, lang, moment, extra)
            self._rendered[key] = text
        return text

    def topics(self, lang: str) -> list[tuple[str, str]]:
        """(faq id, button label) pairs in FAQ order."""
        return [(entry.id, entry.topic[lang]) for entry in self.entries]
