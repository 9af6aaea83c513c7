"""Small talk: greetings, thanks and farewells recognised in a message (pure, no I/O).

A message is small talk when every word of it belongs to a courtesy phrase ("ciao", "grazie
mille", "how are you", "bye") or a filler ("ok", "perfetto", "bot", "a tutti") and at least
one courtesy phrase is there. Any other word makes it a real message: "ciao, qual è il
budget?" is a question, and `rest` gives it without the leading greeting for the matcher.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Kind = Literal["greeting", "how_are_you", "thanks", "farewell"]

# Messages longer than this are never small talk (only their beginning is looked at).
MAX_CHARS = 160

# (phrase, language or None) per role. Phrases are folded: lower case, no accents, words
# separated by single spaces ("what's up" -> "what s up").
_GREETINGS: Mapping[str, tuple[str, ...]] = {
    "it": (
        "ciao",
        "salve",
        "buongiorno",
        "buon giorno",
        "buonasera",
        "buona sera",
        "buon pomeriggio",
        "ehi",
        "ehila",
    ),
    "en": (
        "hello",
        "hi",
        "hey",
        "hallo",
        "hiya",
        "howdy",
        "greetings",
        "good morning",
        "good afternoon",
        "good evening",
        "hello there",
        "hi there",
    ),
}
_HOW_ARE_YOU: Mapping[str, tuple[str, ...]] = {
    "it": ("come stai", "come va", "come state", "come sta", "tutto bene", "piacere"),
    "en": (
        "how are you",
        "how are you doing",
        "how do you do",
        "how s it going",
        "how is it going",
        "what s up",
        "nice to meet you",
    ),
}
_THANKS: Mapping[str, tuple[str, ...]] = {
    "it": (
        "grazie",
        "grazie mille",
        "grazie tante",
        "grazie infinite",
        "molte grazie",
        "ti ringrazio",
        "vi ringrazio",
        "la ringrazio",
    ),
    "en": (
        "thanks",
        "thank you",
        "thank u",
        "thx",
        "ty",
        "tnx",
        "cheers",
        "many thanks",
        "thanks a lot",
        "thank you so much",
        "thank you very much",
        "thanks very much",
        "thanks so much",
    ),
}
_FAREWELLS: Mapping[str, tuple[str, ...]] = {
    "it": (
        "arrivederci",
        "arrivederla",
        "a presto",
        "a dopo",
        "alla prossima",
        "ci vediamo",
        "buona giornata",
        "buona serata",
        "buona notte",
        "buonanotte",
        "addio",
        "no grazie",
        "nient altro",
        "niente altro",
    ),
    "en": (
        "bye",
        "bye bye",
        "goodbye",
        "good bye",
        "see you",
        "see you later",
        "see you soon",
        "see ya",
        "farewell",
        "take care",
        "good night",
        "have a nice day",
        "have a good day",
        "no thanks",
        "no thank you",
        "nothing else",
    ),
}
# Words that may surround courtesy phrases without making the message a question.
_FILLERS: Mapping[str | None, tuple[str, ...]] = {
    "it": (
        "perfetto",
        "ottimo",
        "benissimo",
        "bene",
        "va bene",
        "d accordo",
        "gentilissimo",
        "gentilissima",
        "gentile",
        "davvero",
        "ancora",
        "di nuovo",
        "a tutti",
        "a te",
        "a voi",
        "allora",
        "per l aiuto",
        "per le informazioni",
        "per la risposta",
        "ho una domanda",
        "assistente",
        "caro",
        "cara",
        "e",
        "anche",
        "tu",
        "io",
    ),
    "en": (
        "perfect",
        "great",
        "good",
        "fine",
        "cool",
        "nice",
        "awesome",
        "excellent",
        "very much",
        "so much",
        "a lot",
        "again",
        "really",
        "everyone",
        "everybody",
        "all",
        "folks",
        "there",
        "for the help",
        "for your help",
        "for the info",
        "for the information",
        "for the answer",
        "i have a question",
        "assistant",
        "dear",
        "and",
        "you",
        "too",
        "to you",
        "yeah",
        "yes",
        "well",
    ),
    None: ("ok", "okay", "okey", "k", "bot", "si", "oh", "ah", "eh", "mille", "tante", "so"),
}

_ROLES: tuple[tuple[str, Mapping[str, tuple[str, ...]]], ...] = (
    ("greeting", _GREETINGS),
    ("how_are_you", _HOW_ARE_YOU),
    ("thanks", _THANKS),
    ("farewell", _FAREWELLS),
)


def _table() -> dict[tuple[str, ...], tuple[str, str | None]]:
    table: dict[tuple[str, ...], tuple[str, str | None]] = {}
    for language, phrases in _FILLERS.items():
        for phrase in phrases:
            table[tuple(phrase.split())] = ("filler", language)
    # Courtesy phrases win over fillers spelt the same way.
    for role, by_language in _ROLES:
        for role_language, phrases in by_language.items():
            for phrase in phrases:
                table[tuple(phrase.split())] = (role, role_language)
    return table


_PHRASES = _table()
_LONGEST = max(len(words) for words in _PHRASES)
# Courtesy phrases that may be cut from the front of a question before matching it. "come
# va" or "how are you" are left alone: "come va presentata la domanda?" is a question.
_STRIPPABLE = frozenset({"greeting", "thanks", "farewell", "filler"})
# When several kinds occur, the reply answers the strongest: "ok grazie, ciao" says goodbye.
_PRIORITY: tuple[Kind, ...] = ("farewell", "thanks", "how_are_you", "greeting")


@dataclass(frozen=True)
class SmallTalk:
    """What a message is: `kind` None means a real message (a question, a form answer...)."""

    kind: Kind | None
    lang: str | None
    # The message without its leading courtesy words, for the FAQ matcher; the whole message
    # when nothing was cut.
    rest: str


def fold(text: str) -> str:
    """Lower case, accents and punctuation removed, single spaces: 'Grazie!!' -> 'grazie'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(re.sub(r"[^\w]+", " ", bare).split())


def _parse(words: list[str]) -> list[tuple[int, str, str | None]]:
    """Greedy longest-phrase split: (words used, role or 'other', language) per piece."""
    pieces: list[tuple[int, str, str | None]] = []
    index = 0
    while index < len(words):
        for size in range(min(_LONGEST, len(words) - index), 0, -1):
            found = _PHRASES.get(tuple(words[index : index + size]))
            if found is not None:
                pieces.append((size, found[0], found[1]))
                index += size
                break
        else:
            pieces.append((1, "other", None))
            index += 1
    return pieces


def _language(pieces: Iterable[tuple[int, str, str | None]]) -> str | None:
    votes: dict[str, int] = {}
    for size, _, language in pieces:
        if language is not None:
            votes[language] = votes.get(language, 0) + size
    if not votes:
        return None
    best = max(votes.values())
    # Ties go to the language met first.
    return next(language for language, count in votes.items() if count == best)


def _cut(text: str, folded: list[str], words: int) -> str:
    """`text` from its `words`-th word on, or the whole text if the words do not line up."""
    found = list(re.finditer(r"\w+", text))
    if words <= 0 or len(found) <= words:
        return text
    # The original words must fold to the parsed ones, else the positions are unreliable.
    if [fold(match.group()) for match in found[:words]] != folded[:words]:
        return text
    return text[found[words].start() :]


@lru_cache(maxsize=512)
def small_talk(text: str) -> SmallTalk:
    """Recognise greetings, thanks and farewells (Italian and English) in one message."""
    # Cached: pure, and the engine asks twice per message (language, then dispatch).
    head = text[: MAX_CHARS * 4]
    words = fold(head).split()
    pieces = _parse(words)
    kinds = {role for _, role, _ in pieces} - {"filler"}
    if len(text.strip()) <= MAX_CHARS and words and "other" not in kinds and kinds:
        kind = next(k for k in _PRIORITY if k in kinds)
        return SmallTalk(kind, _language(pieces), text)
    # A real message: cut a leading greeting or thanks (and the fillers before it) so the
    # matcher sees the question; "ciao si può..." keeps its "si".
    leading = used = 0
    for size, role, _ in pieces:
        if role not in _STRIPPABLE:
            break
        used += size
        if role != "filler":
            leading = used
    return SmallTalk(None, None, _cut(text, words, leading) or text)
