"""Texts the enquiry rules write into messages themselves: templates/enquiries/<lang>.yaml.

Below the dialogue on purpose: the domain must not import the dialogue's texts (imports
run one way, down). Plain-text Jinja2 templates; every channel escapes for its own markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import yaml

LANGUAGES = ("it", "en")
# Every key the rules use, with the variables its template may refer to.
KEYS: Mapping[str, frozenset[str]] = {
    "answer_attachments": frozenset({"count", "ref"}),
}


def default_directory() -> Path:
    """templates/enquiries in the checkout or the installed package."""
    from bot.resources import templates_dir

    return templates_dir() / "enquiries"


def _compile(directory: Path) -> tuple[dict[str, dict[str, jinja2.Template]], list[str]]:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    problems: list[str] = []
    templates: dict[str, dict[str, jinja2.Template]] = {lang: {} for lang in LANGUAGES}
    for lang in LANGUAGES:
        path = directory / f"{lang}.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(f"{path}: cannot read it ({exc})")
            continue
        if not isinstance(data, Mapping):
            problems.append(f"{path}: must be a mapping of text keys to templates")
            continue
        for key in sorted(set(data) - set(KEYS)):
            problems.append(f"{path}: unknown key '{key}' (not used by the bot)")
        for key, allowed in KEYS.items():
            source = data.get(key)
            if not isinstance(source, str) or not source.strip():
                problems.append(f"{path}: key '{key}' is missing or empty")
                continue
            try:
                parsed = env.parse(source)
            except jinja2.TemplateSyntaxError as exc:
                problems.append(f"{path}: key '{key}': template error: {exc.message}")
                continue
            unknown = jinja2.meta.find_undeclared_variables(parsed) - allowed
            if unknown:
                problems.append(
                    f"{path}: key '{key}': unknown variable(s) {', '.join(sorted(unknown))}; "
                    f"allowed: {', '.join(sorted(allowed))}"
                )
                continue
            templates[lang][key] = env.from_string(source)
    return templates, problems


def check_texts(directory: Path | None = None) -> list[str]:
    """Problems with the enquiry texts (for `clusterbot check`)."""
    return _compile(directory or default_directory())[1]


@cache
def _templates() -> dict[str, dict[str, jinja2.Template]]:
    templates, problems = _compile(default_directory())
    if problems:
        raise ValueError("; ".join(problems))
    return templates


def enquiry_text(lang: str, key: str, **values: Any) -> str:
    """Render the text `key` in `lang` (English for a language without texts)."""
    templates = _templates()
    chosen = templates.get(lang) or templates["en"]
    return chosen[key].render(values).strip()
