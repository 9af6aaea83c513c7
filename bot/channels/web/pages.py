"""The page (/chat), its script and style, and the one-line embed (/widget.js)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bot.channels.web.guards import COMMON_HEADERS, MAX_TEXT, error
from bot.dialogue.texts import LANGUAGES

if TYPE_CHECKING:
    from bot.settings import Settings

ASSETS = {
    "chat.js": "text/javascript; charset=utf-8",
    "chat.css": "text/css; charset=utf-8",
    "widget.js": "text/javascript; charset=utf-8",
}


class Pages:
    """The routes of the page and its static files (built once, kept in memory)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._assets: dict[str, bytes] = {}

    async def root(self, request: Request) -> Response:
        """/ leads to the chat."""
        return RedirectResponse("/chat", status_code=303)

    async def page(self, request: Request) -> Response:
        """The chat page, in the language asked for."""
        lang = page_language(request, self.settings.language)
        html = _page_template().render(lang=lang, texts=ui_texts(lang))
        headers = {
            # Everything the page loads is its own; nothing inline runs.
            "Content-Security-Policy": (
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors "
                + (" ".join(self.settings.web.allowed_origins) or "'none'")
            ),
            "Cache-Control": "no-store",
            **COMMON_HEADERS,
        }
        return Response(html, media_type="text/html; charset=utf-8", headers=headers)

    async def asset(self, request: Request) -> Response:
        """/chat/{name}: one of ASSETS."""
        name = request.path_params["name"]
        if name not in ASSETS:
            return error(404, "not found")
        return self._asset_response(name)

    async def widget(self, request: Request) -> Response:
        """/widget.js: the script other sites embed."""
        return self._asset_response("widget.js")

    def _asset_response(self, name: str) -> Response:
        body = self._assets.get(name)
        if body is None:
            config = {"email": self.settings.secretariat.email, "maxText": MAX_TEXT}
            body = self._assets[name] = asset_body(name, config)
        return Response(
            body,
            media_type=ASSETS[name],
            headers={
                "Cache-Control": "public, max-age=300",
                # The widget is loaded by other sites' pages.
                "Cross-Origin-Resource-Policy": "cross-origin",
                **COMMON_HEADERS,
            },
        )


def page_language(request: Request, default: str) -> str:
    """?lang=, else the browser's first supported language, else `default`."""
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return default


def web_dir() -> Path:
    """The folder of the page, script, style and interface texts."""
    from bot.resources import templates_dir

    return templates_dir() / "web"


@cache
def ui_texts(lang: str) -> dict[str, str]:
    """The page's own texts (labels, errors) in `lang`."""
    with (web_dir() / f"{lang}.yaml").open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return {str(key): str(value) for key, value in data.items()}


@cache
def _page_template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(web_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("chat.html.j2")


def asset_body(name: str, config: Mapping[str, Any]) -> bytes:
    """A static file; chat.js starts with the interface texts and `config` as data."""
    body = (web_dir() / name).read_bytes()
    if name == "chat.js":
        # The texts travel with the script, so the widget needs no extra request.
        data = {"texts": {lang: ui_texts(lang) for lang in LANGUAGES}, **config}
        prefix = "window.CLUSTERBOT_SETUP = " + json.dumps(data, ensure_ascii=True) + ";\n"
        body = prefix.replace("<", "\\u003c").encode("ascii") + body
    return body
