"""Render what the secretariat and the applicant receive, as HTML and PNG, into docs/mail/.

Every mail is built by the real code from a throw-away database: a conversation with the
bot through the dialogue engine and the shipped knowledge base (so the enquiry mail shows a
real transcript), a digest from `build_digest`, a grouped reminder round from the reminder
job, and the applicant's acknowledgement. The HTML part of each mail is saved, then
photographed by headless Chromium (Debian: `apt-get install -y chromium`).

    .venv/bin/python docs/mail/render.py [--out docs/mail] [--chromium chromium]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.dialogue.engine import Engine, Event  # noqa: E402
from bot.jobs.digest import build_digest  # noqa: E402
from bot.jobs.reminders import send_reminders  # noqa: E402
from bot.knowledge import KnowledgeBase  # noqa: E402
from bot.mail.compose import (  # noqa: E402
    acknowledgement_mail,
    digest_mail,
    message_bytes,
)
from bot.resources import config_dir  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.settings.load import settings_from_mapping  # noqa: E402
from bot.storage import open_database, to_iso  # noqa: E402

# The moment the pictures show: a Thursday morning, Rome time.
NOW = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
WIDTH = 720


class _Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=20)
        return self.now


def _converse(engine: Engine, user: str, lines: list[tuple[str, str]]) -> None:
    """Drive the engine: ("text", words), ("button", id) or ("command", name)."""
    for kind, value in lines:
        if kind == "text":
            event = Event("telegram", user, "text", text=value, chat_id=user, username="g_bianchi")
        elif kind == "button":
            event = Event("telegram", user, "button", button_id=value, chat_id=user)
        else:
            event = Event("telegram", user, "command", command=value, chat_id=user)
        engine.handle(event)


def _insert(db: Any, created: datetime, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "channel": "telegram",
        "user_id": "2002",
        "chat_id": "2002",
        "lang": "it",
        "name": "Anna Verdi",
        "email": "anna.verdi@example.org",
        "organisation": "Cluster Agrifood Veneto",
        "country": "Italy",
        "faq_history": "[]",
        "status": "open",
        "created_at": to_iso(created),
        "forwarded_at": to_iso(created + timedelta(seconds=5)),
        **fields,
    }
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    cursor = db.execute(f"INSERT INTO enquiries ({columns}) VALUES ({marks})", list(row.values()))
    enquiry_id = int(cursor.lastrowid)
    db.execute("UPDATE enquiries SET ref = ? WHERE id = ?", [f"ECCP-{enquiry_id:04d}", enquiry_id])
    return next(iter(db.query("SELECT * FROM enquiries WHERE id = ?", [enquiry_id])))


def _html(message: EmailMessage) -> str:
    parsed = message_from_bytes(message_bytes(message), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def _kind(message: EmailMessage) -> str:
    return str(message["X-Clusterbot-Kind"])


def build_mails(workdir: Path) -> dict[str, EmailMessage]:
    """The four mails, built by the real code from a fresh database in `workdir`."""
    settings: Settings = settings_from_mapping(
        {
            "data_dir": str(workdir),
            "secretariat": {"language": "it", "email": "segreteria@example.org"},
            "telegram": {"admin_chat_id": -1001234567890},
            "timezone": "Europe/Rome",
        },
        "render",
    )
    db = open_database(settings.database_path)
    kb = KnowledgeBase.load(config_dir())
    engine = Engine(db, kb, settings, clock=_Clock(NOW - timedelta(minutes=30)), rate_limit=False)
    _converse(
        engine,
        "1001",
        [
            ("command", "start"),
            ("text", "Qual è il budget complessivo del bando?"),
            ("text", "Qual è il contributo massimo per progetto?"),
            ("command", "contact"),
            ("text", "Giulia Bianchi"),
            ("text", "giulia.bianchi@example.org"),
            ("text", "Distretto Tecnologico Regionale per la Meccatronica e le Città Intelligenti"),
            ("button", "c:IT"),
            (
                "text",
                "I nostri soci sono in due regioni diverse: conta come un solo cluster ai "
                "fini del bando, o dobbiamo presentare due domande?",
            ),
            ("button", "consent:yes"),
            ("button", "send"),
        ],
    )
    # The mails confirming queued: the secretariat's and the applicant's acknowledgement.
    queued = {
        row["kind"]: message_from_bytes(row["payload"], policy=policy.default)
        for row in db.query("SELECT kind, payload FROM deliveries")
    }
    enquiry, acknowledgement = queued["enquiry"], queued["acknowledgement"]
    assert isinstance(enquiry, EmailMessage) and isinstance(acknowledgement, EmailMessage)

    older = _insert(
        db,
        NOW - timedelta(days=4, hours=2),
        question="Un'impresa con sede in Serbia può essere partner del consorzio?",
        reminder_count=2,
        last_reminder_at=to_iso(NOW - timedelta(days=1)),
    )
    second = _insert(
        db,
        NOW - timedelta(days=3, hours=5),
        channel="console",
        lang="en",
        name="Pieter de Vries",
        email="pieter@example.org",
        organisation="Holland High Tech Cluster",
        country="Netherlands",
        question=(
            "Can travel costs of the ClusterXchange visits be claimed before the grant "
            "agreement is signed?"
        ),
        reminder_count=1,
        last_reminder_at=to_iso(NOW - timedelta(days=1)),
    )
    _insert(
        db,
        NOW - timedelta(days=2),
        lang="en",
        organisation="Cluster Basque Energy",
        country="Spain",
        question="Is co-financing from regional funds allowed?",
        status="answered",
        answered_at=to_iso(NOW - timedelta(hours=20)),
        answered_by="admin:4242",
        answer="Yes.",
    )
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('digest.last_run', ?)",
        [to_iso(NOW - timedelta(days=1))],
    )
    digest = digest_mail(settings, build_digest(db, settings, NOW))
    # The reminder round due now, by the reminder job itself (one grouped e-mail).
    assert send_reminders(db, settings, NOW) == [older["ref"], second["ref"]]
    [payload] = [
        row["payload"]
        for row in db.query("SELECT payload FROM deliveries WHERE kind = 'reminders'")
    ]
    reminders = message_from_bytes(payload, policy=policy.default)
    assert isinstance(reminders, EmailMessage)
    english = acknowledgement_mail(settings, {**second, "lang": "en"})
    db.close()
    return {
        "enquiry": enquiry,
        "digest": digest,
        "reminders": reminders,
        "acknowledgement": acknowledgement,
        "acknowledgement-en": english,
    }


def _chromium_args(chromium: str) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--hide-scrollbars",
    ]


def _page_height(chromium: str, page: Path) -> int:
    """The rendered page's height: a copy reports document.scrollHeight into the DOM."""
    probe = page.with_suffix(".probe.html")
    script = (
        "<script>document.body.setAttribute('data-height', "
        "document.documentElement.scrollHeight)</script></body>"
    )
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script), "utf-8")
    try:
        done = subprocess.run(
            [*_chromium_args(chromium), f"--window-size={WIDTH},200", "--dump-dom", probe.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        probe.unlink()
    found = re.search(r'data-height="(\d+)"', done.stdout)
    return int(found.group(1)) if found else 1200


def screenshot(chromium: str, page: Path, png: Path) -> None:
    """Photograph `page` at WIDTH pixels, as tall as its content."""
    height = _page_height(chromium, page)
    subprocess.run(
        [
            *_chromium_args(chromium),
            f"--window-size={WIDTH},{height}",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "mail")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        mails = build_mails(Path(temp))
    total = len(mails)
    for number, (name, message) in enumerate(mails.items(), start=1):
        page = args.out / f"{name}.html"
        page.write_text(_html(message), encoding="utf-8")
        png = args.out / f"{name}.png"
        print(f"[{number}/{total}] {name}: {message['Subject']}", flush=True)
        screenshot(args.chromium, page, png)
        print(f"      -> {png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
