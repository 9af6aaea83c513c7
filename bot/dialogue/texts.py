"""User-visible bot texts: per-language Jinja2 templates from templates/bot/<lang>.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import yaml

LANGUAGES = ("it", "en")

# Every key the engine uses, with the variables its template may refer to.
KEYS: Mapping[str, frozenset[str]] = {
    "welcome": frozenset({"call_id", "title", "standing"}),
    "call_standing": frozenset(
        {"call_open", "opening_ahead", "days_left", "deadline", "city", "opening"}
    ),
    "welcome_back": frozenset(),
    "help": frozenset(),
    "menu_hint": frozenset(),
    "faq_menu": frozenset(),
    "topic_unknown": frozenset(),
    "fallback": frozenset(),
    "fallback_retry": frozenset(),
    "fallback_part": frozenset({"question"}),
    "fallback_unconfirmed": frozenset(),
    "fallback_too_long": frozenset({"length", "max"}),
    "greeting": frozenset({"standing"}),
    "greeting_how": frozenset(),
    "thanks": frozenset(),
    "farewell": frozenset(),
    "empty": frozenset(),
    "unknown_command": frozenset({"command"}),
    "stale_button": frozenset(),
    "no_option": frozenset({"n"}),
    "no_option_menu": frozenset({"n"}),
    "no_option_field": frozenset(),
    "rate_limited": frozenset({"limit"}),
    "daily_limit": frozenset({"limit"}),
    "error": frozenset(),
    "language_choose": frozenset(),
    "language_set": frozenset(),
    "privacy_title": frozenset(),
    "privacy": frozenset({"secretariat", "retention", "controller", "contact", "dpo", "authority"}),
    "consent_ask": frozenset(),
    "consent_choose": frozenset({"accept", "decline"}),
    "declined": frozenset(),
    "declined_choose": frozenset(),
    "forget_confirm": frozenset(),
    "forget_done": frozenset({"count"}),
    "forget_kept": frozenset(),
    "status_none": frozenset(),
    "status_header": frozenset(),
    "status_line": frozenset({"ref", "status", "date"}),
    "status_open": frozenset(),
    "status_answered": frozenset(),
    "status_closed": frozenset(),
    "cancel_done": frozenset(),
    "cancel_nothing": frozenset(),
    "form_intro": frozenset(),
    "form_continue": frozenset(),
    "ask_name": frozenset(),
    "ask_email": frozenset(),
    "email_typo": frozenset({"suggestion", "email"}),
    "btn_email_fix": frozenset({"suggestion"}),
    "btn_email_keep": frozenset({"email"}),
    "ask_organisation": frozenset(),
    "ask_country": frozenset(),
    "ask_country_all": frozenset(),
    "ask_country_name": frozenset(),
    "ask_question": frozenset(),
    "question_kept": frozenset(),
    "err_empty": frozenset(),
    "err_too_short": frozenset({"min"}),
    "err_too_long": frozenset({"max", "length"}),
    "err_multiline": frozenset(),
    "err_control": frozenset(),
    "err_no_letters": frozenset(),
    "err_name_looks_wrong": frozenset(),
    "err_name_question": frozenset(),
    "err_name_too_many_words": frozenset({"max"}),
    "err_email_invalid": frozenset(),
    "err_organisation_email": frozenset(),
    "err_organisation_question": frozenset(),
    "err_organisation_no_letters": frozenset(),
    "err_email_utf8": frozenset(),
    "err_country_unknown": frozenset(),
    "err_country_name_unknown": frozenset(),
    "summary_title": frozenset(),
    "summary": frozenset({"name", "email", "organisation", "country", "question"}),
    "edit_choose": frozenset(),
    "submitted": frozenset({"ref", "email", "channel", "acknowledged"}),
    "answer_relay": frozenset({"ref"}),
    "btn_follow_up": frozenset({"ref"}),
    "follow_up_ask": frozenset({"ref"}),
    "follow_up_sent": frozenset({"ref"}),
    "field_name": frozenset(),
    "field_email": frozenset(),
    "field_organisation": frozenset(),
    "field_country": frozenset(),
    "field_question": frozenset(),
    "btn_contact": frozenset(),
    "btn_forward": frozenset(),
    "btn_topics": frozenset(),
    "btn_accept": frozenset(),
    "btn_decline": frozenset(),
    "btn_confirm": frozenset(),
    "btn_edit": frozenset(),
    "btn_cancel": frozenset(),
    "btn_back": frozenset(),
    "btn_back_to_summary": frozenset(),
    "btn_discard": frozenset(),
    "btn_forget_yes": frozenset(),
    "btn_forget_no": frozenset(),
    "btn_country_other": frozenset(),
    "btn_country_more": frozenset(),
    "btn_lang_it": frozenset(),
    "btn_lang_en": frozenset(),
    "duration_days": frozenset({"n"}),
    "duration_hours": frozenset({"n"}),
    "duration_minutes": frozenset({"n"}),
    "duration_seconds": frozenset({"n"}),
}


class TextsError(Exception):
    """The bot texts cannot be loaded; each problem names the file and the key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _environment() -> jinja2.Environment:
    # Plain text: adapters escape for their own markup, so no autoescape here.
    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def default_directory() -> Path:
    """templates/bot in the checkout or the installed package."""
    from bot.resources import templates_dir

    return templates_dir() / "bot"


def _read(path: Path, problems: list[str]) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path}: file not found")
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read ({exc})")
        return {}
    except yaml.YAMLError as exc:
        problems.append(f"{path}: not valid YAML: {exc}")
        return {}
    if not isinstance(data, Mapping):
        problems.append(f"{path}: must be a mapping of text keys to templates")
        return {}
    texts: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{path}: key '{key}' must be a non-empty text")
            continue
        texts[str(key)] = value
    return texts


class Texts:
    """Compiled bot texts for both languages; `get(lang, key, **values)` renders one."""

    def __init__(self, templates: Mapping[str, Mapping[str, jinja2.Template]]) -> None:
        self._templates = templates
        # Texts without variables are rendered once: most replies are made of them.
        self._static = {
            (lang, key): template.render().strip()
            for lang, by_key in templates.items()
            for key, template in by_key.items()
            if not KEYS.get(key)
        }

    @classmethod
    def load(cls, directory: Path | None = None) -> Texts:
        """Load and check templates/bot/{it,en}.yaml; raise TextsError listing every problem."""
        templates, problems = _compile(directory or default_directory())
        if problems:
            raise TextsError(problems)
        return cls(templates)

    def get(self, lang: str, key: str, **values: Any) -> str:
        """Render the text `key` in `lang` (falling back to English for an unknown language)."""
        if not values:
            static = self._static.get((lang, key))
            if static is not None:
                return static
        chosen = self._templates.get(lang) or self._templates["en"]
        return chosen[key].render(values).strip()

    def duration(self, lang: str, value: timedelta) -> str:
        """A duration in words: '365 days', '48 ore'."""
        seconds = int(value.total_seconds())
        for key, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
            if seconds >= size and seconds % size == 0:
                return self.get(lang, f"duration_{key}", n=seconds // size)
        return self.get(lang, "duration_seconds", n=seconds)


def _compile(directory: Path) -> tuple[dict[str, dict[str, jinja2.Template]], list[str]]:
    env = _environment()
    problems: list[str] = []
    sources = {lang: _read(directory / f"{lang}.yaml", problems) for lang in LANGUAGES}
    templates: dict[str, dict[str, jinja2.Template]] = {lang: {} for lang in LANGUAGES}
    all_keys = set().union(*(set(texts) for texts in sources.values()))
    for key in sorted(all_keys | set(KEYS)):
        present = [lang for lang in LANGUAGES if key in sources[lang]]
        missing = [lang for lang in LANGUAGES if key not in sources[lang]]
        if key not in KEYS:
            problems.append(
                f"{directory}/{present[0]}.yaml: unknown key '{key}' (not used by the bot)"
            )
            continue
        for lang in missing:
            if present:
                problems.append(
                    f"{directory}/{lang}.yaml: key '{key}' is missing "
                    f"(present in {', '.join(present)}.yaml)"
                )
            elif lang == LANGUAGES[0]:
                problems.append(f"{directory}: key '{key}' is missing in every language")
        for lang in present:
            where = f"{directory}/{lang}.yaml: key '{key}'"
            try:
                parsed = env.parse(sources[lang][key])
            except jinja2.TemplateSyntaxError as exc:
                problems.append(f"{where}: template error on line {exc.lineno}: {exc.message}")
                continue
            unknown = jinja2.meta.find_undeclared_variables(parsed) - KEYS[key]
            if unknown:
                problems.append(
                    f"{where}: unknown variable(s) {', '.join(sorted(unknown))}; "
                    f"allowed: {', '.join(sorted(KEYS[key])) or 'none'}"
                )
                continue
            templates[lang][key] = env.from_string(sources[lang][key])
    return templates, problems


def check_texts(directory: Path | None = None) -> list[str]:
    """Problems with the bot texts (missing keys, one-language keys, template errors)."""
    try:
        _, problems = _compile(directory or default_directory())
    except FileNotFoundError as exc:
        return [str(exc)]
    return problems


@cache
def default_texts() -> Texts:
    """The shipped texts, loaded once per process on first use."""
    return Texts.load()
