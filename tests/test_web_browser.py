"""The web chat end to end in a real headless Chromium: FAQ, form, reload, live answer, /forget.

Accessibility is checked in the same runs: roles, labels, focus order and aria-live.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from playwright.async_api import expect

from bot.enquiries import answer_enquiry
from bot.storage import utc_now
from tests.web_support import WAIT_MS, browser_page, free_port, running_web, web_settings

pytestmark = pytest.mark.timeout(240)
expect.set_options(timeout=WAIT_MS)


async def check_accessibility(page: Any) -> None:
    """The structure a screen-reader and keyboard user relies on."""
    log = page.get_by_role("log")
    await expect(log).to_have_attribute("aria-live", "polite")
    await expect(log).to_have_attribute("aria-label", "Conversation")
    await expect(page.get_by_role("status")).to_have_count(1)
    box = page.get_by_label("Your message")
    await expect(box).to_be_visible()
    await expect(box).to_be_focused()
    describedby = await box.get_attribute("aria-describedby")
    assert describedby and len(describedby.split()) == 2
    # Focus order: the message box, then its Send button.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Send")).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    await expect(box).to_be_focused()
    # Every button has an accessible name.
    for button in await page.get_by_role("button").all():
        assert (await button.inner_text()).strip() or await button.get_attribute("aria-label")
    await expect(page.get_by_role("heading", level=2)).to_have_text("Questions about the call")


async def send(page: Any, text: str) -> None:
    box = page.locator("textarea")
    await box.fill(text)
    await box.press("Enter")


async def test_faq_answer_with_a_source_link_and_accessible_page(tmp_path: Path) -> None:
    async with running_web(web_settings(tmp_path / "var")) as run, browser_page() as page:
        await page.goto(f"{run.base}/chat?lang=en")
        greeting = page.locator(".cb-bot").first
        await expect(greeting).to_be_visible()
        await check_accessibility(page)
        await send(page, "What is the total budget of the call?")
        answer = page.locator(".cb-bot").filter(has_text="6,000,000")
        await expect(answer).to_have_count(1)
        # The user's own message is shown as sent, with a hidden speaker label.
        await expect(page.locator(".cb-user").last).to_have_text(
            "You: What is the total budget of the call?"
        )
        # The source is a real link, to a URL of the call's facts only.
        link = answer.get_by_role("link")
        href = await link.first.get_attribute("href")
        assert href is not None and href.startswith("https://")
        assert href in run.channel.conversation.links
        assert await link.first.get_attribute("rel") == "noopener noreferrer"
        # Hostile text is shown as text: nothing runs, no element is made from it.
        await send(page, '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>')
        await expect(page.locator(".cb-user").last).to_contain_text("<img src=x")
        await expect(page.locator(".cb-log img, .cb-log script")).to_have_count(0)
        assert await page.evaluate("window.pwned === undefined")
        # Choices are buttons; a press answers, and focus returns to the message box.
        await page.get_by_role("button", name="Topics").last.click()
        await expect(page.get_by_role("button", name="Deadline")).to_be_visible()
        await expect(page.locator("textarea")).to_be_focused()


async def test_enquiry_reload_restart_live_answer_and_forget(tmp_path: Path) -> None:
    port = free_port()
    settings = web_settings(tmp_path / "var", port=port)
    async with browser_page() as page:
        async with running_web(settings) as run:
            await page.goto(f"{run.base}/chat?lang=en")
            await expect(page.locator(".cb-bot").first).to_be_visible()
            await page.get_by_role("button", name="Write to the secretariat").click()
            box = page.locator("textarea")
            await expect(page.get_by_label("Your name")).to_be_visible()
            await expect(box).to_have_attribute("autocomplete", "name")
            await send(page, "Ada Lovelace")
            await expect(page.get_by_label("Your e-mail address")).to_be_visible()
            # A refused value: the reason shows under the box, which keeps the value.
            await send(page, "ada(at)example")
            error = page.locator(".cb-error")
            await expect(error).to_be_visible()
            await expect(error).to_contain_text("valid e-mail address")
            await expect(box).to_have_attribute("aria-invalid", "true")
            await expect(box).to_have_value("ada(at)example")
            described = await box.get_attribute("aria-describedby")
            assert (await error.get_attribute("id")) in described
            await send(page, "ada@example.org")
            await expect(page.get_by_label("Your organisation")).to_be_visible()
            await expect(error).to_be_hidden()
            await expect(box).to_have_attribute("aria-invalid", "false")
            await send(page, "Analytical Engines Cluster")
            await page.get_by_role("button", name="Italy").click()
            await expect(page.get_by_label("Your question for the secretariat")).to_be_visible()
            await send(page, "Can an incubator lead the consortium <b>alone</b>?")
            await page.get_by_role("button", name="I agree").click()
            await page.get_by_role("log").get_by_role("button", name="Send").click()
            sent = page.locator(".cb-bot").filter(has_text="ECCP-0001")
            await expect(sent).to_have_count(1)
            # User text shows as text: no element was made from it.
            await expect(page.locator(".cb-msg b")).to_have_count(0)
            db: sqlite_utils.Database = run.app.db  # type: ignore[assignment]
            rows = list(db["enquiries"].rows)
            assert [(r["ref"], r["email"], r["channel"]) for r in rows] == [
                ("ECCP-0001", "ada@example.org", "web")
            ]
            shown = await page.locator(".cb-msg").count()
            await page.reload()
            await expect(page.locator(".cb-msg")).to_have_count(shown)
        # A restart of the bot (same data, same address) keeps the conversation too.
        async with running_web(settings) as run:
            await page.reload()
            await expect(page.locator(".cb-msg")).to_have_count(shown)
            await expect(page.locator(".cb-bot").filter(has_text="ECCP-0001")).to_have_count(1)
            # The secretariat answers (as /reply in the admin chat does): it arrives live.
            db = run.app.db  # type: ignore[assignment]
            answer_enquiry(db, "ECCP-0001", "Yes, it can.", actor="admin:1", now=utc_now())
            run.app.kick()
            relay = page.locator(".cb-bot").filter(has_text="Yes, it can.")
            await expect(relay).to_have_count(1)
            await expect(relay).to_contain_text("ECCP-0001")
            await expect(page.locator(".cb-msg")).to_have_count(shown + 1)
            # /forget: confirm, and everything the page and the bot held is gone.
            await send(page, "/forget")
            await page.get_by_role("button", name="Yes, erase").click()
            await expect(page.locator(".cb-msg")).to_have_count(1)
            await expect(page.locator(".cb-bot")).to_contain_text("erased")
            token = await page.evaluate("Object.keys(window.localStorage).length")
            assert token == 0
            row = db["enquiries"].get(1)
            assert row["email"] is None and row["name"] is None
            assert db.conn.execute("SELECT COUNT(*) FROM web_messages").fetchone()[0] == 0
            await page.reload()
            await expect(page.locator(".cb-msg")).to_have_count(1)
            await expect(page.locator(".cb-msg")).not_to_contain_text("ECCP-0001")


class _HostPage(http.server.SimpleHTTPRequestHandler):
    """Another site: the call's page, embedding the widget with one line."""

    html = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def host_site() -> Iterator[tuple[str, type[_HostPage]]]:
    handler = type("Host", (_HostPage,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


async def test_widget_on_another_site_uses_its_colours_and_phone_screen(
    tmp_path: Path, host_site: tuple[str, type[_HostPage]]
) -> None:
    origin, handler = host_site
    settings = web_settings(tmp_path / "var", allowed_origins=[origin])
    async with running_web(settings) as run:
        handler.html = (
            "<!doctype html><html lang='it'><head><style>:root{--clusterbot-accent:"
            "rgb(200, 0, 100)}</style></head><body><h1>Call page</h1>"
            f'<script src="{run.base}/widget.js" data-lang="it"></script></body></html>'
        ).encode()
        async with browser_page(viewport={"width": 375, "height": 667}) as page:
            await page.goto(origin)
            launcher = page.get_by_role("button", name="Scrivici")
            await expect(launcher).to_have_attribute("aria-expanded", "false")
            await launcher.click()
            box = page.get_by_label("Il tuo messaggio")
            await expect(box).to_be_focused()
            await expect(page.locator(".cb-bot").first).to_be_visible()
            send_button = page.get_by_role("button", name="Invia")
            colour = await send_button.evaluate("b => getComputedStyle(b).backgroundColor")
            assert colour == "rgb(200, 0, 100)"
            # On a phone the panel takes the screen and nothing overflows sideways.
            width = await page.locator(".cb-panel").evaluate("p => p.getBoundingClientRect().width")
            assert width <= 375
            await send(page, "Qual è la scadenza del bando?")
            await expect(page.locator(".cb-bot").filter(has_text="2020")).not_to_have_count(0)
            await page.keyboard.press("Escape")
            await expect(page.get_by_role("button", name="Scrivici")).to_be_focused()


async def test_a_clear_message_when_the_bot_is_down(tmp_path: Path) -> None:
    port = free_port()
    settings = web_settings(tmp_path / "var", port=port)
    async with browser_page() as page:
        async with running_web(settings) as run:
            await page.goto(f"{run.base}/chat?lang=en")
            await expect(page.locator(".cb-bot").first).to_be_visible()
        # The server stopped: the page says so and keeps what was typed.
        await send(page, "Is the call still open?")
        error = page.locator(".cb-error")
        await expect(error).to_contain_text("not reachable")
        await expect(error).to_contain_text("segreteria@example.org")
        await expect(page.locator("textarea")).to_have_value("Is the call still open?")
        await asyncio.sleep(0)


async def test_the_page_labels_follow_the_language_chosen(tmp_path: Path) -> None:
    async with running_web(web_settings(tmp_path / "var")) as run, browser_page() as page:
        await page.goto(f"{run.base}/chat?lang=en")
        await expect(page.locator(".cb-bot").first).to_be_visible()
        await expect(page.get_by_role("button", name="Send")).to_be_visible()
        await send(page, "/language")
        await page.get_by_role("button", name="Italiano").click()
        await expect(page.get_by_role("heading", level=2)).to_have_text("Domande sul bando")
        await expect(page.get_by_role("button", name="Invia")).to_be_visible()
        await expect(page.get_by_label("Il tuo messaggio")).to_be_visible()
        assert await page.evaluate("document.documentElement.lang") == "it"
        # A reload keeps the conversation's language, whatever the address asks for.
        await page.reload()
        await expect(page.get_by_role("heading", level=2)).to_have_text("Domande sul bando")
