"""Likely typos in the domain of an e-mail address: "mario@gmial.con" -> "mario@gmail.com".

The known domains and endings are data (config/email_domains.yaml); the comparison is the
optimal-string-alignment distance from rapidfuzz (a swapped pair of letters is one edit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from rapidfuzz import process
from rapidfuzz.distance import OSA


@dataclass(frozen=True)
class KnownDomains:
    """Mail domains applicants commonly use, and the top-level domains to check endings by."""

    domains: frozenset[str]
    tlds: frozenset[str]

    @classmethod
    def of(cls, domains: Iterable[str], tlds: Iterable[str]) -> KnownDomains:
        """From lists of names (case and a trailing dot do not matter)."""
        return cls(
            frozenset(d.strip().lower().rstrip(".") for d in domains if d.strip()),
            frozenset(t.strip().lower().lstrip(".") for t in tlds if t.strip()),
        )


def load_known_domains(path: Path) -> KnownDomains:
    """The lists in a YAML file with `domains:` and `tlds:`."""
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'domains' and 'tlds'")
    domains, tlds = data.get("domains") or [], data.get("tlds") or []
    if not all(isinstance(item, str) for item in [*domains, *tlds]):
        raise ValueError(f"{path}: 'domains' and 'tlds' must be lists of names")
    return KnownDomains.of(domains, tlds)


@cache
def shipped_domains() -> KnownDomains:
    """config/email_domains.yaml as shipped."""
    from bot.resources import config_dir

    return load_known_domains(config_dir() / "email_domains.yaml")


def _allowed_edits(domain: str) -> int:
    # One edit for short domains, two from ten characters on ("gmial.con" has two).
    return 1 if len(domain) < 9 else 2


def suggest_domain(domain: str, known: KnownDomains) -> str | None:
    """A known domain the given one is likely a typo of, or None."""
    domain = domain.strip().lower().rstrip(".")
    if not domain or domain in known.domains:
        return None
    best = process.extractOne(
        domain, known.domains, scorer=OSA.distance, score_cutoff=_allowed_edits(domain)
    )
    if best is not None and best[1] > 0:
        return str(best[0])
    name, dot, tld = domain.rpartition(".")
    if not dot or not name or tld in known.tlds:
        return None
    ending = process.extractOne(tld, known.tlds, scorer=OSA.distance, score_cutoff=1)
    return f"{name}.{ending[0]}" if ending is not None else None


def suggest_address(address: str, known: KnownDomains | None = None) -> str | None:
    """The address with its domain corrected when that looks like a typo, else None."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return None
    suggestion = suggest_domain(domain, known or shipped_domains())
    return f"{local}@{suggestion}" if suggestion else None


def check_domains() -> list[str]:
    """Problems with config/email_domains.yaml, for `clusterbot check`."""
    from bot.resources import config_dir

    path = config_dir() / "email_domains.yaml"
    try:
        known = load_known_domains(path)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return [f"{path}: cannot be read ({exc})"]
    problems = [
        f"{path}: '{domain}' is not a domain name"
        for domain in sorted(known.domains)
        if "." not in domain or " " in domain or "@" in domain
    ]
    if not known.domains:
        problems.append(f"{path}: 'domains' is empty: no typo would ever be noticed")
    return problems
