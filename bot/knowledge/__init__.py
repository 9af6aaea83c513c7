"""The knowledge base: call facts, FAQ answers and the matcher, loaded from one folder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from bot.knowledge.cues import (
    LANGUAGE_FILE,
    LanguageCues,
    in_every_language,
    load_language,
)
from bot.knowledge.errors import KnowledgeError
from bot.knowledge.facts import LANGUAGES, Call, load_call
from bot.knowledge.faq import Faq, FaqEntry, load_faq_file
from bot.knowledge.lexicon import LEXICON_FILE, Lexicon, load_lexicon
from bot.knowledge.render import call_status, render_answer
from bot.knowledge.results import Answer, Found, Understanding, load_fallback_texts
from bot.knowledge.scoring import Recent
from bot.knowledge.verdict import Verdicts

if TYPE_CHECKING:
    from bot.knowledge.match import Matcher
    from bot.knowledge.understand import Reader
    from bot.settings import Settings

CALL_FILE = "call.yaml"
FAQ_FILE = "faq.yaml"
RENDER_CACHE_SIZE = 1024
MAX_ANSWERS = 3
# Messages whose language is kept (see `KnowledgeBase.detect`).
DETECTED_KEPT = 64


__all__ = ["Answer", "Found", "KnowledgeBase", "KnowledgeError", "Understanding"]


class KnowledgeBase:
    """Facts, FAQ entries, lexicon and matcher; understands free-text messages in it or en."""

    def __init__(
        self,
        call: Call,
        faq: Faq | tuple[FaqEntry, ...],
        min_score: float | None = None,
        fallback: Mapping[str, str] | None = None,
        *,
        default_lang: str = "en",
        secretariat_email: str = "",
        lexicon: Lexicon | None = None,
        cues: LanguageCues | None = None,
        index_cache: tuple[Path, str] | None = None,
    ) -> None:
        if not isinstance(faq, Faq):
            faq = Faq(tuple(faq), (), None, {})
        self.call = call
        self.faq = faq
        self.entries = faq.entries
        self.by_id = {entry.id: entry for entry in self.entries}
        self.lexicon = lexicon or Lexicon.from_groups(())
        self._cues = cues
        self._min_score = min_score
        # (folder, digest of the sources) where the built ranking index is kept, if anywhere.
        self._index_cache = index_cache
        self.fallback = dict(fallback) if fallback else load_fallback_texts()
        self.default_lang = default_lang if default_lang in LANGUAGES else "en"
        self.secretariat_email = secretariat_email
        self._rendered: dict[tuple[str, str, bool, bool, int], str] = {}
        # A message's language is asked for twice: for the reply (the dialogue's session)
        # and again when the message is understood.
        self._detected: Recent[str, str | None] = Recent(DETECTED_KEPT)

    @classmethod
    def load(
        cls,
        directory: Path,
        min_score: float | None = None,
        *,
        default_lang: str = "en",
        secretariat_email: str = "",
        index_cache: Path | None = None,
    ) -> KnowledgeBase:
        """Load call.yaml, faq.yaml and lexicon.yaml from `directory`; raise KnowledgeError
        with every problem. With `index_cache`, the built ranking index is kept in that
        folder (see index_cache.py)."""
        if not directory.is_dir():
            raise KnowledgeError([f"{directory}: knowledge folder not found (check knowledge_dir)"])
        call = load_call(directory / CALL_FILE)
        faq = load_faq_file(directory / FAQ_FILE, call)
        kept = None
        if index_cache is not None:
            from bot.knowledge.index_cache import digest, slot
            from bot.resources import config_dir

            # The index is built from these (the word lists are read when used, not kept).
            files = [directory / name for name in (CALL_FILE, FAQ_FILE, LEXICON_FILE)]
            files += [directory / LANGUAGE_FILE, config_dir() / LANGUAGE_FILE]
            sources = digest(files, f"{directory.resolve()} {min_score}")
            kept = (index_cache, f"{slot(directory)}-{sources}")
        return cls(
            call,
            faq,
            min_score,
            default_lang=default_lang,
            secretariat_email=secretariat_email,
            lexicon=load_lexicon(directory),
            cues=load_language(directory),
            index_cache=kept,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> KnowledgeBase:
        """The knowledge base the settings point at, with their threshold and language; its
        built index kept in the user's cache folder unless `faq.index_cache` is off."""
        from bot.knowledge.index_cache import default_folder

        return cls.load(
            settings.resolved_knowledge_dir,
            settings.faq.min_score,
            default_lang=settings.language,
            secretariat_email=settings.secretariat.email,
            index_cache=default_folder() if settings.faq.index_cache else None,
        )

    # ------------------------------------------------------------------ matching parts

    @cached_property
    def matcher(self) -> Matcher:
        """The ranking index, built on first use (it loads numpy and the stemmers), or read
        from the folder that keeps it."""
        if self._index_cache is None:
            return self._build_matcher()
        from bot.knowledge.index_cache import load_or_build
        from bot.knowledge.match import Matcher

        folder, key = self._index_cache
        return load_or_build(folder, key, Matcher, self._build_matcher)

    def _build_matcher(self) -> Matcher:
        from bot.knowledge.analysis import OPEN_GROUP
        from bot.knowledge.match import Document, Matcher, Tuning

        tuning = Tuning.from_mapping(self.faq.matching)
        if self._min_score is not None:
            tuning = replace(tuning, threshold=self._min_score)
        documents = [
            Document(
                entry.id,
                entry.topic if entry.confirmed else OPEN_GROUP + entry.id,
                entry.questions,
                entry.keywords,
                {
                    lang: entry.label.get(lang, "") + " " + entry.answer_texts.get(lang, "")
                    for lang in LANGUAGES
                },
            )
            for entry in self.entries
        ]
        return Matcher(
            documents,
            self.lexicon,
            tuning,
            self.cues.informal,
            in_every_language(self.cues.filler),
            self.cues.all_words(),
            {lang: self.cues.words_of(lang) for lang in LANGUAGES},
            (self.call.id,),
            self.cues.truncated,
            self.cues.common,
        )

    @cached_property
    def cues(self) -> LanguageCues:
        """The generic language cues: the folder's own, else the shipped ones."""
        return self._cues if self._cues is not None else load_language()

    @cached_property
    def reader(self) -> Reader:
        from bot.knowledge.understand import Reader

        return Reader(self.matcher, self.cues)

    @cached_property
    def verdicts(self) -> Verdicts:
        """Yes or no before the answer to a closed question quoting a figure (verdict.py)."""
        cues = self.cues
        percents = frozenset(" ".join(p) for p in in_every_language(cues.percents))
        return Verdicts(cues.verdicts, cues.scales, in_every_language(cues.comparisons), percents)

    @property
    def min_score(self) -> float:
        return self.matcher.tuning.threshold

    # ------------------------------------------------------------------ language

    def detect(self, question: str, lang: str | None = None) -> str | None:
        """The message's language, 'it' or 'en', or None when it does not say."""
        if lang in LANGUAGES:
            return lang
        from bot.knowledge.language import detect

        return self._detected.get(question, lambda: detect(question, self.matcher, self.cues))

    def clear_cache(self) -> None:
        """Forget kept languages and scorings (a benchmark times each message as if new)."""
        self._detected.clear()
        self.matcher.clear_cache()

    def choose_language(
        self, text: str, lang: str | None = None, previous_lang: str | None = None
    ) -> str:
        """An explicit choice, else the message's language, else the previous one, else the
        default."""
        if lang in LANGUAGES:
            return str(lang)
        return self._language(text, self.detect(text), previous_lang)

    def guess(self, text: str) -> str | None:
        """A weak hint of the language of a message that does not say it (see
        `language.guess`), for a conversation that has no language yet."""
        from bot.knowledge.language import guess

        return guess(text)

    def _language(self, text: str, detected: str | None, previous_lang: str | None) -> str:
        """The message's language if it says, else the previous one, else the letters' hint,
        else the default."""
        if detected is not None:
            return detected
        if previous_lang in LANGUAGES:
            return str(previous_lang)
        return self.guess(text) or self.default_lang

    # ------------------------------------------------------------------ understanding

    def understand(
        self,
        text: str,
        lang: str | None = None,
        previous_lang: str | None = None,
        now: datetime | None = None,
    ) -> Understanding:
        """Read a whole message: its language, up to 3 answers, unconfirmed points and the
        question(s) left for the secretariat. `lang` is an explicit choice (/language)."""
        detected = self.detect(text)
        reply_lang = (
            str(lang) if lang in LANGUAGES else self._language(text, detected, previous_lang)
        )
        match_lang = detected or reply_lang
        answers: list[Found] = []
        unconfirmed: list[Found] = []
        unanswered: list[str] = []
        best_score = 0.0
        for piece in self.reader.read(text, match_lang):
            score = piece.best.score if piece.best is not None else 0.0
            best_score = max(best_score, score)
            if piece.best is not None and (piece.answered or piece.unconfirmed):
                entry = self.by_id[piece.best.id]
                target = answers if piece.answered else unconfirmed
                seen = any(found.faq_id == entry.id for found in answers + unconfirmed)
                if not seen and len(target) < MAX_ANSWERS:
                    answer = self.render(entry.id, reply_lang, now)
                    if self.reader.settles(piece, match_lang):
                        answer = self.verdicts.prefixed(piece.text, answer, reply_lang)
                    found = Found(
                        entry.id,
                        entry.topic if entry.confirmed else None,
                        round(score, 4),
                        piece.sentence,
                        answer,
                    )
                    target.append(found)
                # An answer given (now or for an earlier question) settles the question; a
                # fourth one is left for the secretariat rather than dropped.
                if piece.answered and (seen or target[-1].faq_id == entry.id):
                    continue
            if piece.sentence not in unanswered:
                unanswered.append(piece.sentence)
        return Understanding(
            reply_lang,
            tuple(answers),
            tuple(unconfirmed),
            "\n".join(unanswered) if unanswered else None,
            round(best_score, 4),
        )

    def answer(
        self,
        question: str,
        lang: str | None = None,
        now: datetime | None = None,
        previous_lang: str | None = None,
    ) -> Answer:
        """The whole reply to a message, as one text (see `understand` for its parts)."""
        found = self.understand(question, lang, previous_lang, now)
        parts = [item.text for item in found.answers + found.unconfirmed]
        if found.unanswered is not None:
            parts.append(self.fallback[found.lang])
        primary = found.answers[0].score if found.answers else found.score
        return Answer(
            found.faq_id,
            primary,
            found.lang,
            "\n\n".join(parts),
            found.topic,
            found.answers,
        )

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
            text = render_answer(
                self.by_id[faq_id], self.call, lang, moment, extra, cite=self.faq.cite
            )
            self._rendered[key] = text
        return text

    def topics(self, lang: str) -> list[tuple[str, str]]:
        """(faq id, button label) pairs of the topics' main entries, in FAQ order."""
        return [
            (entry.id, entry.label[lang])
            for entry in self.entries
            if entry.confirmed and entry.id == entry.topic and lang in entry.label
        ]

    def title(self, faq_id: str, lang: str) -> str | None:
        """The label of an entry's topic (a claim's title is its topic's label)."""
        entry = self.by_id.get(faq_id)
        if entry is None:
            return None
        main = self.by_id.get(entry.topic, entry)
        return main.label.get(lang) or entry.label.get(lang)
