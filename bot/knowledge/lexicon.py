"""The per-call lexicon, read from YAML data, and the tokens every view of a text shares.

`lexicon.yaml` (one per call, beside `faq.yaml`) holds the call's vocabulary: groups of
terms that mean the same thing (synonyms, acronyms and their expansions, Italian and English
equivalents), each read as one concept, and `other_programmes`, names that must never be
answered as this call (they all read as the one concept `other_programmes`).

The generic language resources (`language.yaml`) are read by cues.py.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from bot.knowledge.errors import KnowledgeError
from bot.knowledge.facts import read_yaml

LEXICON_FILE = "lexicon.yaml"
OTHER_PROGRAMMES = "other_programmes"
CONCEPT_MARK = "~"

_TOKEN_RE = re.compile(r"[^\W_]+")
_APOSTROPHES = str.maketrans({"’": " ", "‘": " ", "`": " ", "´": " ", "'": " "})
# "6.000.000", "6 000 000" and "500,000" are one number.
_THOUSANDS_RE = re.compile(r"(?<=\d)[.,\u00a0\u202f ](?=\d{3}\b)")


def fold(text: str) -> str:
    """Lower case, no accents, apostrophes as spaces, digit groups joined."""
    text = _THOUSANDS_RE.sub("", text.translate(_APOSTROPHES)).casefold()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=4096)
def _tokens(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN_RE.findall(fold(text)))


def surface_words(text: str) -> list[str]:
    """The words of `text` as `tokens` cuts them, lower case but with their accents ("è" is a
    verb, "e" a conjunction); `tokens` where the two do not line up."""
    cleaned = unicodedata.normalize(
        "NFC", _THOUSANDS_RE.sub("", text.translate(_APOSTROPHES)).casefold()
    )
    words = _TOKEN_RE.findall(cleaned)
    folded = tokens(text)
    return words if len(words) == len(folded) else folded


def tokens(text: str) -> list[str]:
    """The folded words of `text` (letters and digits)."""
    # A message's sentences are tokenised several times while it is read: cached.
    return list(_tokens(text))


@dataclass(frozen=True)
class Group:
    """Terms read as one concept; `name` is the first term, `terms` every folded phrase."""

    name: str
    terms: tuple[tuple[str, ...], ...]
    where: str


@dataclass(frozen=True)
class Lexicon:
    """Phrase -> concept table built from the groups, longest phrases first."""

    groups: tuple[Group, ...]
    phrases: Mapping[tuple[str, ...], str]
    longest: int
    # Per first word, the lengths of the phrases it starts, longest first: most words start
    # none, and are passed over without a look-up per length.
    sizes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def from_groups(cls, groups: tuple[Group, ...]) -> Lexicon:
        phrases: dict[tuple[str, ...], str] = {}
        for group in groups:
            concept = CONCEPT_MARK + "_".join(tokens(group.name))
            for term in group.terms:
                phrases.setdefault(term, concept)
        longest = max((len(term) for term in phrases), default=1)
        sizes: dict[str, set[int]] = {}
        for term in phrases:
            sizes.setdefault(term[0], set()).add(len(term))
        return cls(
            groups,
            phrases,
            longest,
            {first: tuple(sorted(lengths, reverse=True)) for first, lengths in sizes.items()},
        )

    def concepts(self, words: list[str]) -> list[str]:
        """`words` with every lexicon phrase replaced by its concept (longest match first)."""
        if not self.phrases:
            return words
        out: list[str] = []
        index = 0
        while index < len(words):
            for size in self.sizes.get(words[index], ()):
                concept = self.phrases.get(tuple(words[index : index + size]))
                if concept is not None:
                    out.append(concept)
                    index += size
                    break
            else:
                out.append(words[index])
                index += 1
        return out


def phrase_list(raw: Any, where: str, problems: list[str]) -> tuple[tuple[str, ...], ...]:
    if not isinstance(raw, list) or not all(isinstance(item, str) and item for item in raw):
        problems.append(f"{where}: must be a list of non-empty strings")
        return ()
    phrases = tuple(tuple(tokens(item)) for item in raw)
    for item, phrase in zip(raw, phrases, strict=True):
        if not phrase:
            problems.append(f"{where}: '{item}' has no letters or digits")
    return tuple(phrase for phrase in phrases if phrase)


def parse_lexicon(data: Any, path: Path) -> Lexicon:
    """Validate a parsed lexicon document; raise with every problem found."""
    if data is None:
        return Lexicon.from_groups(())
    if not isinstance(data, Mapping):
        raise KnowledgeError([f"{path}: must be a mapping with 'synonyms' and 'other_programmes'"])
    problems: list[str] = []
    groups: list[Group] = []
    unknown = sorted(set(data) - {"synonyms", OTHER_PROGRAMMES})
    if unknown:
        problems.append(f"{path}: unknown section(s) {', '.join(unknown)}")
    raw_groups = data.get("synonyms") or []
    if not isinstance(raw_groups, list):
        problems.append(f"{path}: 'synonyms' must be a list of lists of terms")
        raw_groups = []
    seen: dict[tuple[str, ...], str] = {}
    for number, raw in enumerate(raw_groups, 1):
        where = f"{path}: synonyms #{number}"
        terms = phrase_list(raw, where, problems)
        if len(terms) < 2:
            problems.append(f"{where}: a group needs at least two terms")
            continue
        name = " ".join(terms[0])
        for term in terms:
            if term in seen and seen[term] != name:
                problems.append(
                    f"{where}: '{' '.join(term)}' is already in the group of '{seen[term]}'"
                )
            seen.setdefault(term, name)
        groups.append(Group(name, terms, where))
    raw_other = data.get(OTHER_PROGRAMMES)
    if raw_other is not None:
        terms = phrase_list(raw_other, f"{path}: {OTHER_PROGRAMMES}", problems)
        if terms:
            groups.append(Group(OTHER_PROGRAMMES, terms, f"{path}: {OTHER_PROGRAMMES}"))
    if problems:
        raise KnowledgeError(problems)
    return Lexicon.from_groups(tuple(groups))


def load_lexicon(directory: Path) -> Lexicon:
    """The lexicon of a knowledge folder (an absent file is an empty lexicon)."""
    path = directory / LEXICON_FILE
    if not path.exists():
        return Lexicon.from_groups(())
    return parse_lexicon(read_yaml(path), path)
