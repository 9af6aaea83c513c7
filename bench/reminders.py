"""Reminder punctuality: how late a reminder reaches the SMTP server after its due time.

The app schedules one date job at the instant the next reminder is due (no polling). This
runs the real App against aiosmtpd on loopback with reminders.first_after = 3s, several
enquiries forwarded a little apart, and prints each reminder's lateness (received - due)
next to the 60 s poll it replaced (up to 60 s late, 30 s on average).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import App  # noqa: E402
from bot.settings.load import settings_from_mapping  # noqa: E402
from bot.storage import from_iso, utc_now  # noqa: E402
from tests.smtp_support import Handler, SmtpServer, insert_enquiry, queue_enquiry_mail  # noqa: E402

FIRST_AFTER = timedelta(seconds=3)


class Stamping(Handler):
    """Records when each reminder arrived (wall clock, UTC)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.reminders: dict[str, float] = {}
        self.all_in = asyncio.Event()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        reply = await super().handle_DATA(server, session, envelope)
        data = envelope.original_content or envelope.content
        if b"X-Clusterbot-Kind: reminder\r\n" in data:
            ref = data.split(b"X-Clusterbot-Ref: ", 1)[1].split(b"\r\n", 1)[0].decode()
            self.reminders[ref] = time.time()
            if len(self.reminders) >= self.count:
                self.all_in.set()
        return reply


async def run(count: int) -> list[float]:
    handler = Stamping(count)
    with tempfile.TemporaryDirectory() as folder:
        async with SmtpServer(handler) as server:
            settings = settings_from_mapping(
                {
                    "data_dir": folder,
                    "smtp": {"host": "127.0.0.1", "port": server.port, "security": "none"},
                    # One mail per enquiry (not the default grouped mail), so each
                    # reminder names its enquiry and its own lateness can be measured.
                    "reminders": {
                        "first_after": "3s",
                        "repeat_every": "1d",
                        "max_count": 1,
                        "grouped": False,
                    },
                }
            )
            async with App(settings) as app:
                assert app.db is not None
                for _ in range(count):
                    queue_enquiry_mail(app.db, settings, insert_enquiry(app.db), utc_now())
                    app.kick()
                    await asyncio.sleep(0.3)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(handler.all_in.wait(), 30)
                rows = app.db.execute("SELECT ref, forwarded_at FROM enquiries").fetchall()
    late = []
    for ref, forwarded in rows:
        due = (from_iso(forwarded) + FIRST_AFTER).timestamp()
        if ref in handler.reminders:
            late.append(handler.reminders[ref] - due)
    if len(late) != count:
        raise SystemExit(f"only {len(late)} of {count} reminders arrived within 30 s")
    return late


def main() -> int:
    """Run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="enquiries (default 10)")
    args = parser.parse_args()
    late = asyncio.run(run(args.count))
    print(f"reminder lateness, first_after = 3s, {args.count} enquiries, aiosmtpd on loopback")
    print(f"{'':<34}{'median s':>10}{'max s':>9}")
    print(f"{'date job at the due instant':<34}{statistics.median(late):>10.3f}{max(late):>9.3f}")
    print(f"{'60 s poll (replaced), expected':<34}{30.0:>10.3f}{60.0:>9.3f}")
    verdict = "OK" if max(late) < 1.0 else "LATE"
    print(f"every reminder within 1 s of its due time: {verdict}")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    raise SystemExit(main())
