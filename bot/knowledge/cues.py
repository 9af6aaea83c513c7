"""The generic language resources: the cues of language.yaml, not about any call.

`language.yaml` holds what is not about any call: per language, the words and phrases that
mark a sentence as a question (`question_cues`), the phrases after which the real question
starts in a chatty sentence (`focus_cues`), the conjunctions that join two questions
(`conjunctions`), and the informal spellings of everyday words ("nn", "cmq", "plz", "u"),
read as the words they stand for, for matching and as evidence of the language
(`informal`), words of asking and politeness ignored when matching (`filler`), and
the phrases that, after a comma, start the reason for asking (`reason_cues`, optional), and
the words that offer a choice of answers (`choice_cues`, "or") with the phrases that still
ask yes or no (`yes_no_tails`, "or not"), both optional, and the stressed final vowels of
regional infinitives without their ending (`truncated_endings`, "entrà", optional), and the
English words Italian writes as its own ("deadline", "budget": `shared_words`, optional),
which say nothing of a message's language.
`words.txt` beside it lists the commonest words of both languages (`WordList`, read on first
need), real words the speller never corrects.
A knowledge folder may carry its own; otherwise the shipped ones are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from bot.knowledge.errors import KnowledgeError
from bot.knowledge.facts import LANGUAGES, read_yaml
from bot.knowledge.lexicon import phrase_list, tokens

LANGUAGE_FILE = "language.yaml"
# The commonest words of each language (scripts/wordlists.py): real words, never corrected.
WORDS_FILE = "words.txt"

Item = TypeVar("Item")


def in_every_language(table: Mapping[str, frozenset[Item]]) -> frozenset[Item]:
    """The cues of one kind, whichever language they belong to."""
    return frozenset().union(*table.values())


@dataclass(frozen=True)
class LanguageCues:
    """Generic, per-language cues for splitting a message into its questions."""

    question: Mapping[str, frozenset[tuple[str, ...]]]
    focus: Mapping[str, frozenset[tuple[str, ...]]]
    conjunctions: Mapping[str, frozenset[str]]
    open: Mapping[str, frozenset[tuple[str, ...]]]
    # Per language: an informal spelling -> the folded words it stands for.
    informal: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    # Per language: words of asking and politeness that say nothing of what is asked.
    filler: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Per language: after a comma, phrases that start the reason for asking ("since",
    # "perché", "dato che"): context, not a question.
    reason: Mapping[str, frozenset[tuple[str, ...]]] = field(default_factory=dict)
    # Per language: words that offer a choice of answers ("or", "oppure"): "still open or
    # closed?" asks which, not yes or no ...
    choice: Mapping[str, frozenset[tuple[str, ...]]] = field(default_factory=dict)
    # ... unless the choice is yes or no itself ("or not", "o no").
    yes_no_tails: Mapping[str, frozenset[tuple[str, ...]]] = field(default_factory=dict)
    # The commonest words of either language (words.txt), folded; read on first look-up.
    common: WordList = field(default_factory=lambda: WordList(None))
    # Per language: a stressed final vowel that stands for a dropped infinitive ending
    # ("entrà" for "entrare") -> the ending.
    truncated: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Words both languages write ("deadline", "lump sum" in Italian): evidence of neither.
    shared: frozenset[str] = frozenset()
    # Per language: the reply's first word when a quoted figure holds or not ({"yes": "Sì"}).
    verdicts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Words after a number that multiply it ("k", "milioni"), any language.
    scales: Mapping[str, float] = field(default_factory=dict)
    # Per language: phrases that compare a figure ("more than", "almeno").
    comparisons: Mapping[str, frozenset[tuple[str, ...]]] = field(default_factory=dict)
    # Per language: words written for "%" ("percent", "per cento").
    percents: Mapping[str, frozenset[tuple[str, ...]]] = field(default_factory=dict)

    def all_words(self) -> frozenset[str]:
        """Every word of the cues, fillers and informal readings: real words of a language."""
        words = set(in_every_language(self.filler)) | set(in_every_language(self.conjunctions))
        for table in (self.question, self.focus, self.open):
            for phrase in in_every_language(table):
                words.update(phrase)
        for full in self.all_informal().values():
            words.update(full)
        return frozenset(words | self.shared)

    def words_of(self, lang: str) -> frozenset[str]:
        """The words of one language's cues, fillers and informal spellings."""
        words: set[str] = set(self.filler.get(lang, ())) | set(self.conjunctions.get(lang, ()))
        for table in (self.question, self.focus, self.open):
            for phrase in table.get(lang, ()):
                words.update(phrase)
        words.update(self.informal.get(lang, {}))
        # In every language's words, so that they tell the languages apart no more than "ok".
        words.update(self.shared)
        return frozenset(words)

    def all_informal(self) -> dict[str, tuple[str, ...]]:
        return {short: full for table in self.informal.values() for short, full in table.items()}


def parse_language(data: Any, path: Path) -> LanguageCues:
    """Validate the generic language cues."""
    problems: list[str] = []
    sections: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {}
    if not isinstance(data, Mapping):
        raise KnowledgeError([f"{path}: must be a mapping"])
    for section in ("question_cues", "focus_cues", "open_cues", "conjunctions"):
        raw = data.get(section)
        if not isinstance(raw, Mapping):
            problems.append(f"{path}: '{section}' must have an 'it' and an 'en' list")
            continue
        sections[section] = {
            lang: phrase_list(raw.get(lang), f"{path}: {section}.{lang}", problems)
            for lang in LANGUAGES
        }
    informal = _informal(data.get("informal"), path, problems)
    truncated = _truncated(data.get("truncated_endings"), path, problems)
    shared = phrase_list(data.get("shared_words") or [], f"{path}: shared_words", problems)
    if any(len(phrase) != 1 for phrase in shared):
        problems.append(f"{path}: shared_words: one word per item")
    reason = _optional_phrases(data, "reason_cues", path, problems)
    choice = _optional_phrases(data, "choice_cues", path, problems)
    yes_no_tails = _optional_phrases(data, "yes_no_tails", path, problems)
    comparisons = _optional_phrases(data, "comparison_cues", path, problems)
    percents = _optional_phrases(data, "percent_words", path, problems)
    verdicts = _verdicts(data.get("verdicts"), path, problems)
    scales = _scales(data.get("scale_words"), path, problems)
    filler: dict[str, frozenset[str]] = {}
    if data.get("filler") is not None:
        raw_filler = data["filler"]
        if not isinstance(raw_filler, Mapping):
            problems.append(f"{path}: 'filler' must have an 'it' and an 'en' list")
        else:
            for lang in LANGUAGES:
                words = phrase_list(raw_filler.get(lang) or [], f"{path}: filler.{lang}", problems)
                if any(len(phrase) != 1 for phrase in words):
                    problems.append(f"{path}: filler.{lang}: one word per item")
                filler[lang] = frozenset(" ".join(phrase) for phrase in words)
    if problems:
        raise KnowledgeError(problems)
    return LanguageCues(
        question={lang: frozenset(v) for lang, v in sections["question_cues"].items()},
        focus={lang: frozenset(v) for lang, v in sections["focus_cues"].items()},
        open={lang: frozenset(v) for lang, v in sections["open_cues"].items()},
        conjunctions={
            lang: frozenset(" ".join(p) for p in v) for lang, v in sections["conjunctions"].items()
        },
        informal=informal,
        truncated=truncated,
        shared=frozenset(word for phrase in shared for word in phrase),
        filler=filler,
        reason=reason,
        choice=choice,
        yes_no_tails=yes_no_tails,
        verdicts=verdicts,
        scales=scales,
        comparisons=comparisons,
        percents=percents,
    )


def _verdicts(raw: Any, path: Path, problems: list[str]) -> dict[str, dict[str, str]]:
    """The optional `verdicts` section: per language, the words for "yes" and "no"."""
    if raw is None:
        return {}
    tables: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        table = raw.get(lang) if isinstance(raw, Mapping) else None
        if not isinstance(table, Mapping) or not all(
            isinstance(table.get(key), str) and table[key].strip() for key in ("yes", "no")
        ):
            problems.append(f'{path}: verdicts.{lang} must give "yes" and "no" words (quoted)')
            continue
        tables[lang] = {key: str(table[key]).strip() for key in ("yes", "no")}
    return tables


def _scales(raw: Any, path: Path, problems: list[str]) -> dict[str, float]:
    """The optional `scale_words` section: per language, a word -> the number it multiplies by."""
    if raw is None:
        return {}
    scales: dict[str, float] = {}
    for lang in LANGUAGES:
        table = raw.get(lang) if isinstance(raw, Mapping) else None
        if not isinstance(table, Mapping) or not all(
            isinstance(word, str) and isinstance(value, int | float) and value > 0
            for word, value in table.items()
        ):
            problems.append(f"{path}: scale_words.{lang} must map words to numbers ('mila: 1000')")
            continue
        scales.update({word.casefold(): float(value) for word, value in table.items()})
    return scales


def _optional_phrases(
    data: Mapping[str, Any], section: str, path: Path, problems: list[str]
) -> dict[str, frozenset[tuple[str, ...]]]:
    """An optional section of per-language phrase lists (empty when absent)."""
    raw = data.get(section)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"{path}: '{section}' must have an 'it' and an 'en' list")
        return {}
    return {
        lang: frozenset(phrase_list(raw.get(lang) or [], f"{path}: {section}.{lang}", problems))
        for lang in LANGUAGES
    }


def _truncated(raw: Any, path: Path, problems: list[str]) -> dict[str, dict[str, str]]:
    """The optional `truncated_endings` section: per language, a stressed final letter -> the
    ending it stands for."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"{path}: 'truncated_endings' must have an 'it' and an 'en' mapping")
        return {}
    tables: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        table = raw.get(lang) or {}
        if not isinstance(table, Mapping) or not all(
            isinstance(end, str) and len(end) == 1 and isinstance(full, str) and full.isalpha()
            for end, full in table.items()
        ):
            problems.append(
                f"{path}: truncated_endings.{lang} must map one letter to an ending ('à: are')"
            )
            continue
        tables[lang] = {end.casefold(): full.casefold() for end, full in table.items()}
    return tables


def _informal(raw: Any, path: Path, problems: list[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """The optional `informal` section: per language, one word -> the words it stands for."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"{path}: 'informal' must have an 'it' and an 'en' mapping")
        return {}
    tables: dict[str, dict[str, tuple[str, ...]]] = {}
    owner: dict[str, str] = {}
    for lang in LANGUAGES:
        table = raw.get(lang) or {}
        if not isinstance(table, Mapping):
            problems.append(f"{path}: informal.{lang} must map a spelling to its words")
            continue
        tables[lang] = {}
        for short, full in table.items():
            short_words = tokens(str(short))
            full_words = tuple(tokens(str(full)))
            if len(short_words) != 1 or not full_words:
                problems.append(
                    f"{path}: informal.{lang}: '{short}: {full}' must map one word to words"
                )
                continue
            if short_words[0] in owner:
                problems.append(
                    f"{path}: informal: '{short}' is in both {owner[short_words[0]]} and {lang}"
                )
                continue
            owner[short_words[0]] = lang
            tables[lang][short_words[0]] = full_words
    return tables


def load_language(directory: Path | None = None) -> LanguageCues:
    """The knowledge folder's language.yaml and words.txt, else the shipped ones."""
    from bot.resources import config_dir

    def found(name: str) -> Path:
        path = directory / name if directory is not None else None
        return path if path is not None and path.exists() else config_dir() / name

    cues = parse_language(read_yaml(found(LANGUAGE_FILE)), found(LANGUAGE_FILE))
    return replace(cues, common=WordList(found(WORDS_FILE)))


class WordList:
    """A word list file, read on first look-up: a question whose words the knowledge base
    knows never needs it, so a cold start does not pay for reading it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @cached_property
    def words(self) -> frozenset[str]:
        """The list's words (KnowledgeError when the file cannot be read)."""
        return read_words(self.path) if self.path is not None else frozenset()

    def __contains__(self, word: object) -> bool:
        return word in self.words


def read_words(path: Path) -> frozenset[str]:
    """The words of a word list, one per line after its opening comment lines (starting
    with '#'); none when the file is missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return frozenset()
    except (OSError, UnicodeDecodeError) as error:
        raise KnowledgeError([f"{path}: cannot read the word list ({error})"]) from error
    start = 0
    while text.startswith("#", start):
        start = text.find("\n", start) + 1 or len(text)
    # One split over the whole list: a start-up cost of milliseconds, not tens.
    return frozenset(text[start:].split())
