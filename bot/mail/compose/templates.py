"""The Jinja environments (plain text, autoescaped HTML) and rendering a mail's three parts."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import jinja2

if TYPE_CHECKING:
    pass


class _Templates:
    """The (text, html) Jinja environments and every template loaded so far.

    Templates are compiled once per process (auto_reload off: no stat() per render); an
    edited template takes effect at the next start.
    """

    def __init__(self, directory: str) -> None:
        loader = jinja2.FileSystemLoader(directory)
        self.text = jinja2.Environment(
            loader=loader,
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        # Explicitly on: select_autoescape() would not match the `.html.j2` suffix.
        self.html = jinja2.Environment(
            loader=loader,
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._loaded: dict[tuple[bool, str], jinja2.Template] = {}

    def get(self, name: str, *, html: bool = False) -> jinja2.Template:
        """The compiled template `name` (from the html environment when `html`)."""
        key = (html, name)
        template = self._loaded.get(key)
        if template is None:
            environment = self.html if html else self.text
            template = self._loaded[key] = environment.get_template(name)
        return template


@cache
def _environments() -> _Templates:
    """The templates; built lazily so importing this module touches no files."""
    from bot.resources import templates_dir

    return _Templates(str(templates_dir() / "mail"))


def _render_pair(lang: str, name: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
    """Render (subject, text, html) of template `name` in `lang`."""
    templates = _environments()
    subject = templates.get(f"{lang}/{name}.subject.j2").render(context)
    subject = " ".join(subject.split())
    text = templates.get(f"{lang}/{name}.txt.j2").render(context)
    html = templates.get(f"{lang}/{name}.html.j2", html=True).render(context)
    return subject, text, html
