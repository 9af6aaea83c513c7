"""How a question's words are written: regional endings, informal spellings and typos.

`Spellings` reads a question's text in a language: regional truncated infinitives written
out ("entrà" -> "entrare", `restore_endings`), chat and dialect spellings read as the words
they stand for ("nn" -> "non"), and typos corrected by the `Speller`.

Typo tolerance: an unknown word of a question read as a known one a small edit away.

Only a word that is neither the knowledge base's as written nor a word of the language
resources (stop words, the cues and fillers of language.yaml, the commonest words) is
corrected, to the closest word of the knowledge base within one edit (two from 8 letters,
rapidfuzz OSA distance); so is a word the knowledge base writes only once (one of its own
typo variants) when a word it writes far more often is that close. Among words equally
close, the likeliest typo wins (a noisy channel): a letter left out is the commonest slip, so
a word reached by adding letters ("totl" -> "total") beats one reached by changing them
("tool"), then the word the knowledge base writes more often; the rest is settled the same
way in every run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Mapping

from bot.knowledge.lexicon import fold

# Shortest unknown word worth correcting; shorter ones are too ambiguous.
MIN_CORRECTED = 4
LONG_WORD = 8
MAX_CORRECTIONS_CACHED = 4096
# Fewest letters before a stressed final vowel read as a truncated infinitive ("entrà").
MIN_TRUNCATED = 4
# Levenshtein weights (insertion, deletion, substitution) from the unknown word to a known
# one: adding a left-out letter is the cheapest repair.
SLIP_WEIGHTS = (1, 2, 2)
# A word the knowledge base writes at most this often, and a word it writes this many times
# more often one slip away: the first is read as the second (see `Speller.correct`).
RARE_WRITTEN = 1
FREQUENT_RATIO = 5


class Spellings:
    """A question's words as written, read as the knowledge base writes them."""

    def __init__(
        self,
        speller: Speller,
        informal: Mapping[str, Mapping[str, tuple[str, ...]]] | None = None,
        truncated: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.speller = speller
        # Per language: informal spellings ("nn", "plz") -> the words they stand for.
        self.informal = dict(informal or {})
        self.truncated = {lang: dict(table) for lang, table in (truncated or {}).items() if table}

    def written_out(self, text: str, lang: str) -> str:
        """`text` with regional truncated infinitives written out (`restore_endings`)."""
        return restore_endings(text, self.truncated.get(lang, {}), self.speller.is_real)

    def expand(self, words: list[str], lang: str) -> list[str]:
        """`words` with the informal spellings of `lang` read as the words they stand for
        (another language's could be real words here: "far", "par")."""
        own = self.informal.get(lang, {})
        out: list[str] = []
        for word in words:
            out.extend(own.get(word, (word,)))
        return out

    def correct(self, word: str) -> str:
        """A known word for an unknown one within a small edit distance (`Speller`)."""
        return self.speller.correct(word)


class Speller:
    """Corrects unknown words to the knowledge base's own words."""

    def __init__(
        self,
        surface: Mapping[str, int],
        known: frozenset[str],
        common: Container[str] = frozenset(),
    ) -> None:
        # The knowledge base's words, each with how often it writes them.
        self.frequency = dict(surface)
        self.surface = frozenset(surface)
        # Real words that are not the knowledge base's: never turned into one of its words.
        self.known = known
        # The commonest words of the languages (words.txt): real words too, looked up last,
        # when a word would otherwise be corrected.
        self.common = common
        self._corrections: dict[str, str] = {}
        self._by_length: dict[int, list[str]] = {}
        for word in sorted(self.surface):
            self._by_length.setdefault(len(word), []).append(word)

    def correct(self, word: str) -> str:
        """A known word for an unknown one within a small edit distance, else the word."""
        if word in self.known or len(word) < MIN_CORRECTED or not word.isalpha():
            return word
        cached = self._corrections.get(word)
        if cached is not None:
            return cached
        if word in self.surface:
            # A word the knowledge base writes once and no dictionary knows is likely one of
            # its own typo variants ("whats the dealine …"): read as the much commoner word
            # one slip away, if there is one, so it matches that word's entries too.
            rare = self.frequency[word] <= RARE_WRITTEN and word not in self.common
            best = self._closest(word, FREQUENT_RATIO * self.frequency[word]) if rare else word
        elif word in self.common:
            best = word
        else:
            # A word whose stem the index knows ("excelence") is still read as the written
            # word it misspells, so the phrases it belongs to ("cluster excellence") count.
            best = self._closest(word)
        if len(self._corrections) >= MAX_CORRECTIONS_CACHED:
            self._corrections.clear()
        self._corrections[word] = best
        return best

    def is_real(self, word: str) -> bool:
        """Whether `word` is the knowledge base's, a known real word or a common one."""
        return word in self.surface or word in self.known or word in self.common

    def _closest(self, word: str, at_least: int = 1) -> str:
        """The likeliest word of the knowledge base `word` is a slip of, among those it writes
        at least `at_least` times; `word` itself when none is close enough."""
        from rapidfuzz import process
        from rapidfuzz.distance import OSA, Levenshtein

        limit = 1 if len(word) < LONG_WORD else 2
        found: list[tuple[int, int, int, str]] = []
        # Never to a word shorter than the shortest corrected one: "pick" is no typo of the
        # acronym "pic".
        for size in range(max(MIN_CORRECTED, len(word) - limit), len(word) + limit + 1):
            candidates = self._by_length.get(size)
            if not candidates:
                continue
            for candidate, distance, _ in process.extract(
                word, candidates, scorer=OSA.distance, score_cutoff=limit, limit=None
            ):
                if candidate == word or self.frequency.get(candidate, 0) < at_least:
                    continue
                slips = Levenshtein.distance(word, candidate, weights=SLIP_WEIGHTS)
                found.append((int(distance), slips, -self.frequency.get(candidate, 0), candidate))
        return min(found)[3] if found else word


def restore_endings(text: str, endings: Mapping[str, str], is_real: Callable[[str], bool]) -> str:
    """`text` with regional truncated infinitives written out ("entrà" -> "entrare"):
    `endings` maps a stressed final letter to the ending it stands for (language.yaml's
    `truncated_endings`); only where the full form `is_real` ("città" stays)."""
    if not endings or not any(end in text for end in endings):
        return text

    def full(match: re.Match[str]) -> str:
        whole = fold(match.group(1)) + endings[match.group(2).casefold()]
        return whole if is_real(whole) else match.group(0)

    ends = "".join(sorted(endings))
    return re.sub(rf"\b(\w{{{MIN_TRUNCATED},}})([{ends}])(?!\w)", full, text, flags=re.I)
