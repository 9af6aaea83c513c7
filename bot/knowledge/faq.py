"""FAQ entries: load and validate them, their per-language Jinja2 answers compiled
(rendering is in render.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from bot.knowledge.errors import KnowledgeError
from bot.knowledge.facts import LANGUAGES, Call, read_yaml
from bot.knowledge.render import (
    CallStatus,
    call_status,
    cited_links,
    fact_context,
    make_environment,
    render_answer,
    source_links,
)

KINDS = ("answer", "unconfirmed")

# What in an answer's template is not prose: Jinja2 tags, whose fact names and filters are
# English in either language ("funding_rate", "date"), bot commands ("/contact") and links.
_NOT_PROSE_RE = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}|(?<!\w)/\w+|https?://\S+", re.S)

# Names a template may use besides the facts: computed at answer time.
CONTEXT_NAMES = frozenset(
    {"lang", "call_open", "days_left", "opening_ahead", "call", "secretariat_email"}
)


class AnswerTemplate:
    """An answer's Jinja2 template: checked when the file is read (syntax, filters, names),
    compiled to Python on its first rendering. A question renders one or two answers, and
    compiling every answer of the file up front was a tenth of a cold `clusterbot ask`."""

    def __init__(self, env: jinja2.Environment, parsed: jinja2.nodes.Template) -> None:
        self._env = env
        self._parsed = parsed

    @cached_property
    def _template(self) -> jinja2.Template:
        return self._env.from_string(self._parsed)

    def render(self, context: Mapping[str, Any]) -> str:
        """The answer's text for `context` (facts and answer-time names)."""
        return self._template.render(context)


@dataclass(frozen=True)
class FaqEntry:
    """One FAQ entry: a topic's main answer, a finer claim under a topic, or a point the
    facts leave open (`kind: unconfirmed`), with its variants, answers and cited facts."""

    id: str
    label: Mapping[str, str]
    questions: Mapping[str, tuple[str, ...]]
    keywords: Mapping[str, tuple[str, ...]]
    answers: Mapping[str, AnswerTemplate] = field(repr=False)
    sources: tuple[str, ...]
    topic: str = ""
    kind: str = "answer"
    # The answers' prose (`prose`): their words tell the two languages apart.
    answer_texts: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def confirmed(self) -> bool:
        """False for an entry on a point the facts do not confirm (a tailored fallback)."""
        return self.kind == "answer"


@dataclass(frozen=True)
class Faq:
    """The FAQ file: its entries, the required topic ids, the fact cited under every answer
    and the matcher's fitted parameters."""

    entries: tuple[FaqEntry, ...]
    topics: tuple[str, ...]
    cite: str | None
    matching: Mapping[str, float]


def prose(template: str) -> str:
    """An answer template's own words, without its tags, commands and links."""
    return _NOT_PROSE_RE.sub(" ", template)


def _string_list(raw: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(item, str) and item for item in raw):
        problems.append(f"{where}: must be a list of non-empty strings")
        return ()
    return tuple(raw)


def _parse_entry(
    raw: Any, index: int, path: Path, call: Call, envs: Mapping[str, jinja2.Environment]
) -> tuple[FaqEntry | None, list[str]]:
    problems: list[str] = []
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
        return None, [f"{path}: entry #{index + 1} has no 'id'"]
    entry_id = raw["id"]
    where = f"{path}: entry '{entry_id}'"
    label_raw = raw.get("label")
    topic_id = raw.get("topic", entry_id)
    kind = raw.get("kind", "answer")
    if kind not in KINDS:
        problems.append(f"{where}: kind must be one of {', '.join(KINDS)}, not '{kind}'")
    if not isinstance(topic_id, str) or not topic_id:
        problems.append(f"{where}: 'topic' must be a topic id")
        topic_id = entry_id
    if label_raw is None:
        label_raw = {}
    questions_raw = raw.get("questions")
    keywords_raw = raw.get("keywords") or {}
    answers_raw = raw.get("answer")
    label: dict[str, str] = {}
    questions: dict[str, tuple[str, ...]] = {}
    keywords: dict[str, tuple[str, ...]] = {}
    answers: dict[str, AnswerTemplate] = {}
    for part, value in (
        ("label", label_raw),
        ("questions", questions_raw),
        ("answer", answers_raw),
    ):
        if not isinstance(value, Mapping):
            problems.append(f"{where}: '{part}' must have an 'it' and an 'en' version")
    if problems:
        return None, problems
    assert isinstance(label_raw, Mapping)
    assert isinstance(questions_raw, Mapping)
    assert isinstance(answers_raw, Mapping)
    if not isinstance(keywords_raw, Mapping):
        problems.append(f"{where}: 'keywords' must map it/en to lists")
        keywords_raw = {}
    sources = _string_list(raw.get("sources"), f"{where}: sources", problems)
    for name in sources:
        if name not in call.facts:
            problems.append(f"{where}: sources: unknown fact '{name}' (not in {call.path.name})")
    if not sources:
        problems.append(f"{where}: 'sources' must name at least one fact whose link is cited")
    for lang in LANGUAGES:
        for part, mapping in (("questions", questions_raw), ("answer", answers_raw)):
            if lang not in mapping or not mapping[lang]:
                problems.append(f"{where}: missing '{lang}' translation of '{part}'")
        if label_raw and not label_raw.get(lang):
            problems.append(f"{where}: missing '{lang}' translation of 'label'")
        if isinstance(label_raw.get(lang), str):
            label[lang] = label_raw[lang]
        questions[lang] = _string_list(
            questions_raw.get(lang), f"{where}: questions.{lang}", problems
        )
        keywords[lang] = _string_list(keywords_raw.get(lang), f"{where}: keywords.{lang}", problems)
        source = answers_raw.get(lang)
        if not isinstance(source, str) or not source:
            continue
        env = envs[lang]
        try:
            parsed = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(
                f"{where}: answer.{lang}: template error on line {exc.lineno}: {exc.message}"
            )
            continue
        try:
            # Generating the code, as this does, finds what parsing does not, such as an
            # unknown filter; the code is compiled when the answer is first rendered.
            names = jinja2.meta.find_undeclared_variables(parsed)
            answers[lang] = AnswerTemplate(env, parsed)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(
                f"{where}: answer.{lang}: template error on line {exc.lineno}: {exc.message}"
            )
            continue
        for name in sorted(names):
            if name not in call.facts and name not in CONTEXT_NAMES:
                problems.append(
                    f"{where}: answer.{lang}: unknown fact '{name}' (not in {call.path.name})"
                )
    if problems:
        return None, problems
    entry = FaqEntry(
        id=entry_id,
        label=label,
        questions=questions,
        keywords=keywords,
        answers=answers,
        sources=sources,
        topic=topic_id,
        kind=str(kind),
        answer_texts={lang: prose(str(answers_raw[lang])) for lang in LANGUAGES},
    )
    return entry, []


def _topic_list(data: Mapping[str, Any], path: Path, problems: list[str]) -> tuple[str, ...]:
    raw = data.get("topics")
    if not isinstance(raw, list) or not raw or not all(isinstance(t, str) and t for t in raw):
        problems.append(f"{path}: 'topics' must list the topic ids every entry belongs to")
        return ()
    return tuple(raw)


def _check_topics(
    entries: list[FaqEntry], topics: tuple[str, ...], path: Path, problems: list[str]
) -> None:
    by_id = {entry.id: entry for entry in entries}
    for entry in entries:
        if topics and entry.topic not in topics:
            problems.append(
                f"{path}: entry '{entry.id}': unknown topic '{entry.topic}' "
                f"(topics: {', '.join(topics)})"
            )
    for topic in topics:
        main = by_id.get(topic)
        if main is None:
            problems.append(f"{path}: required entry '{topic}' is missing")
        elif not main.confirmed or main.topic != topic:
            problems.append(f"{path}: entry '{topic}' must be the answer of its own topic")
        elif set(main.label) != set(LANGUAGES):
            problems.append(
                f"{path}: entry '{topic}' needs a 'label' (the menu button) per language"
            )


def parse_faq_file(data: Any, path: Path, call: Call) -> Faq:
    """Validate a parsed FAQ document against the call; raise with every problem found."""
    if not isinstance(data, Mapping) or not isinstance(data.get("entries"), list):
        raise KnowledgeError([f"{path}: must be a mapping with 'topics' and 'entries'"])
    problems: list[str] = []
    topics = _topic_list(data, path, problems)
    cite = data.get("cite")
    if cite is not None and (not isinstance(cite, str) or cite not in call.facts):
        problems.append(f"{path}: cite: unknown fact '{cite}' (not in {call.path.name})")
        cite = None
    matching = data.get("matching") or {}
    if not isinstance(matching, Mapping) or not all(
        isinstance(v, int | float) for v in matching.values()
    ):
        problems.append(f"{path}: 'matching' must map parameter names to numbers")
        matching = {}
    envs = {lang: make_environment(lang) for lang in LANGUAGES}
    entries: list[FaqEntry] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["entries"]):
        entry, entry_problems = _parse_entry(raw, index, path, call, envs)
        problems.extend(entry_problems)
        if entry is not None:
            if entry.id in seen:
                problems.append(f"{path}: entry '{entry.id}' appears twice")
            seen.add(entry.id)
            entries.append(entry)
    if not problems:
        _check_topics(entries, topics, path, problems)
    if problems:
        raise KnowledgeError(problems)
    return Faq(tuple(entries), topics, cite, dict(matching))


def parse_faq(data: Any, path: Path, call: Call) -> tuple[FaqEntry, ...]:
    """The entries of a parsed FAQ document (see parse_faq_file)."""
    return parse_faq_file(data, path, call).entries


def load_faq_file(path: Path, call: Call) -> Faq:
    """Load and validate the FAQ file."""
    return parse_faq_file(read_yaml(path), path, call)


def load_faq(path: Path, call: Call) -> tuple[FaqEntry, ...]:
    """Load and validate the FAQ file's entries."""
    return load_faq_file(path, call).entries


# Rendering lives in render.py; these names stay importable from here.
__all__ = [
    "KINDS",
    "CallStatus",
    "Faq",
    "FaqEntry",
    "call_status",
    "cited_links",
    "fact_context",
    "load_faq",
    "load_faq_file",
    "make_environment",
    "parse_faq",
    "parse_faq_file",
    "render_answer",
    "source_links",
]
