"""Take the README's screenshot of the web chat: docs/web-chat.png (Debian's Chromium).

    .venv/bin/python scripts/web_screenshot.py [OUT.png]

Starts the web channel on a free loopback port with a throw-away data folder, asks one
question in Italian and saves the page as it looks on a phone-sized screen.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.web_support import browser_page, running_web, web_settings  # noqa: E402


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            running_web(web_settings(Path(tmp) / "var")) as run,
            browser_page(viewport={"width": 420, "height": 820}, device_scale_factor=1) as page,
        ):
            await page.goto(f"{run.base}/chat?lang=it")
            await page.locator(".cb-bot").first.wait_for()
            box = page.locator("textarea")
            await box.fill("Qual è il budget del bando?")
            await box.press("Enter")
            await page.locator(".cb-bot").filter(has_text="6.000.000").wait_for()
            await box.fill("Posso partecipare dalla Norvegia?")
            await page.screenshot(path=str(out))
    print(f"saved {out}")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "web-chat.png"
    asyncio.run(main(target))
