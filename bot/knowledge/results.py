"""What the knowledge base returns: the questions of a message it understood, and a reply."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.knowledge.errors import KnowledgeError
from bot.knowledge.facts import LANGUAGES, read_yaml


@dataclass(frozen=True)
class Found:
    """One question of a message and the entry that answers it (or the unconfirmed point)."""

    faq_id: str
    topic: str | None
    score: float
    question: str
    text: str


@dataclass(frozen=True)
class Understanding:
    """What the bot understood of a whole message.

    `answers`: the questions the facts answer (at most 3, in message order); `unconfirmed`:
    questions on points the facts leave open, each with its tailored text; `unanswered`: the
    question(s) to forward (pre-filling the form), None when everything was answered.
    """

    lang: str
    answers: tuple[Found, ...]
    unconfirmed: tuple[Found, ...]
    unanswered: str | None
    score: float

    @property
    def faq_id(self) -> str | None:
        """The primary entry: the first answer, else the first unconfirmed point."""
        if self.answers:
            return self.answers[0].faq_id
        if self.unconfirmed:
            return self.unconfirmed[0].faq_id
        return None

    @property
    def topic(self) -> str | None:
        """The primary answer's topic; None on any fallback."""
        return self.answers[0].topic if self.answers else None


@dataclass(frozen=True)
class Answer:
    """The result of one look-up: faq_id is None when nothing matched; topic is None on any
    fallback (also an unconfirmed point, which faq_id then names). `text` is the whole reply;
    `answers` holds each answered question's own text."""

    faq_id: str | None
    score: float
    lang: str
    text: str
    topic: str | None = None
    answers: tuple[Found, ...] = ()


def load_fallback_texts() -> dict[str, str]:
    from bot.resources import templates_dir

    path = templates_dir() / "ask" / "texts.yaml"
    data = read_yaml(path)
    texts = data.get("fallback") if isinstance(data, Mapping) else None
    if not isinstance(texts, Mapping) or any(
        not isinstance(texts.get(lang), str) for lang in LANGUAGES
    ):
        raise KnowledgeError([f"{path}: 'fallback' must have an 'it' and an 'en' text"])
    return {lang: str(texts[lang]).strip() for lang in LANGUAGES}
