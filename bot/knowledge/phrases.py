"""Finding the cue phrases of language.yaml in a sentence's words: at a position, the last
or first occurrence, and loosely, with one word inside a phrase ("I [just] wanted to ask")."""

from __future__ import annotations

from functools import lru_cache

Phrases = frozenset[tuple[str, ...]]


@lru_cache(maxsize=64)
def _by_first_word(phrases: Phrases) -> dict[str, tuple[tuple[str, ...], ...]]:
    """`phrases` grouped by their first word, so a look-up tries only the ones that can match."""
    table: dict[str, list[tuple[str, ...]]] = {}
    for phrase in phrases:
        table.setdefault(phrase[0], []).append(phrase)
    return {first: tuple(group) for first, group in table.items()}


def starts_with(words: list[str], phrases: Phrases, at: int = 0) -> bool:
    """Whether one of `phrases` starts at position `at` of `words`."""
    if at >= len(words):
        return False
    candidates = _by_first_word(phrases).get(words[at], ())
    return any(tuple(words[at : at + len(phrase)]) == phrase for phrase in candidates)


def find(words: list[str], phrases: Phrases, first: bool = False) -> int:
    """End position of the last occurrence of any phrase in `words` (`first`: of the first
    occurrence, its longest phrase), or -1."""
    table = _by_first_word(phrases)
    found = -1
    for at, word in enumerate(words):
        for phrase in table.get(word, ()):
            if tuple(words[at : at + len(phrase)]) == phrase:
                found = max(found, at + len(phrase))
        if first and found >= 0:
            return found
    return found


def find_loosely(words: list[str], phrases: Phrases, first: bool = False) -> int:
    """`find`, where a phrase of two words or more may also have one word inside it ("volevo
    [solo] chiedervi", "I [just] wanted to ask", "vorrei [anche] sapere")."""
    found = find(words, phrases, first)
    if first and found >= 0:
        return found
    table = _by_first_word(phrases)
    for at, word in enumerate(words):
        for phrase in table.get(word, ()):
            size = len(phrase)
            for gap in range(1, size):
                if (
                    tuple(words[at : at + gap]) == phrase[:gap]
                    and tuple(words[at + gap + 1 : at + size + 1]) == phrase[gap:]
                ):
                    found = max(found, at + size + 1)
        if first and found >= 0:
            return found
    return found


__all__ = ["Phrases", "find", "find_loosely", "starts_with"]
