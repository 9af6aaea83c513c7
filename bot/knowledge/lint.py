"""Checks of the FAQ data a secretariat maintains, beyond what loading validates.

Loading already refuses an unknown topic, a missing translation or an unknown fact (errors).
Here, once the knowledge base has loaded:
- errors: a question variant written in two entries (the matcher could not tell them apart);
- warnings: a variant that the matcher reads as an entry of another topic, or as another
  open point (naming both: the variant needs rewording or belongs to the other entry), and
  a lexicon group none of whose terms appears in any question or keyword (it references
  nothing, so it does nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.knowledge.facts import LANGUAGES
from bot.knowledge.lexicon import tokens

if TYPE_CHECKING:
    from bot.knowledge import KnowledgeBase


@dataclass
class Findings:
    """Problems found: errors make `check` fail, warnings are printed only."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _phrases(words: list[str], longest: int) -> set[tuple[str, ...]]:
    return {
        tuple(words[start : start + size])
        for start in range(len(words))
        for size in range(1, longest + 1)
        if start + size <= len(words)
    }


def lint(
    kb: KnowledgeBase, faq_name: str = "faq.yaml", lexicon_name: str = "lexicon.yaml"
) -> Findings:
    """Every duplicated variant, misread variant and unused lexicon group of `kb`."""
    found = Findings()
    owners: dict[tuple[str, str], str] = {}
    for entry in kb.entries:
        for lang in LANGUAGES:
            for question in entry.questions.get(lang, ()):
                key = (lang, " ".join(tokens(question)))
                other = owners.get(key)
                if other is not None and other != entry.id:
                    found.errors.append(
                        f"{faq_name}: question '{question}' is in both '{other}' and "
                        f"'{entry.id}'; keep it in one entry"
                    )
                owners.setdefault(key, entry.id)
    reader = kb.reader
    groups = {document.id: document.group for document in kb.matcher.documents}
    for entry in kb.entries:
        for lang in LANGUAGES:
            for question in entry.questions.get(lang, ()):
                query = kb.matcher.query(question, lang)
                best, _, _, _ = reader.decide(query, reader.is_closed(question))
                # A topic's main entry and its claims may share a question: the reply is
                # of the same topic (a yes/no question gets the claim's direct answer).
                if best is not None and best.group != groups[entry.id]:
                    found.warnings.append(
                        f"{faq_name}: entry '{entry.id}': question '{question}' matches entry "
                        f"'{best.id}' better than its own; reword it or move it there"
                    )
    used: set[tuple[str, ...]] = set()
    longest = kb.lexicon.longest
    for entry in kb.entries:
        for lang in LANGUAGES:
            for text in (*entry.questions.get(lang, ()), *entry.keywords.get(lang, ())):
                used |= _phrases(tokens(text), longest)
    for group in kb.lexicon.groups:
        if not any(term in used for term in group.terms):
            found.warnings.append(
                f"{lexicon_name}: group '{group.name}' references nothing: none of its terms "
                "is in a question or keyword of the FAQ"
            )
    return found
