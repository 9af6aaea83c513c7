# ruff: noqa: ASYNC240, E501, F841, I001
"""Build tests/data/release-116fcbc.sql: run with the code at commit 116fcbc (kept for the record).

Usage at 116fcbc: .venv/bin/python tests/data/make_release_db.py tests/data/release-116fcbc.sql
"""

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, "tests")
from smtp_support import T0, Handler, SmtpServer, make_settings

from bot.jobs.digest import queue_digest
from bot.jobs.reminders import send_reminders
from bot.channels.telegram_journal import Journal, OutMessage
from bot.enquiries import answer_enquiry, close_enquiry, forget_user, submit_enquiry
from bot.mail.outbox import deliver_due
from bot.storage import open_database


async def main(out: Path):
    tmp = Path("/tmp/relfix")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    async with SmtpServer(Handler()) as server:
        settings = make_settings(
            tmp, smtp={"port": server.port}, telegram={"admin_chat_id": -100777}
        )
        db = open_database(settings.database_path)

        def draft(i):
            return {
                "name": f"Applicant {i}",
                "email": f"a{i}@example.org",
                "organisation": f"Org {i}",
                "country": "Italia",
                "question": f"Question number {i}, about partners?",
            }

        rows = []
        for i in range(1, 6):
            rows.append(
                submit_enquiry(
                    db,
                    settings,
                    draft(i),
                    channel="telegram",
                    user_id=str(1000 + i),
                    chat_id=str(1000 + i),
                    username=None,
                    lang="it" if i % 2 else "en",
                    faq_history=["budget?"],
                    now=T0 + timedelta(minutes=i),
                )
            )
        # enquiries 1-3 delivered (sent), 4-5 still pending
        rep = await deliver_due(db, settings, T0 + timedelta(minutes=3, seconds=30))
        print("sent", rep.sent)
        # a permanently failed mail: server refuses DATA
        server.handler.data_replies = ["554 5.7.1 rejected as spam"]
        e6 = submit_enquiry(
            db,
            settings,
            draft(6),
            channel="telegram",
            user_id="1006",
            chat_id="1006",
            username="u6",
            lang="en",
            faq_history=[],
            now=T0 + timedelta(minutes=10),
        )
        db.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE status='pending' AND enquiry_id != ?",
            ["2099-01-01T00:00:00.000000+00:00", e6["id"]],
        )
        rep = await deliver_due(db, settings, T0 + timedelta(minutes=11))
        print("failed", rep.failed)
        # a temporary failure (attempts > 0, still pending)
        server.handler.data_replies = ["451 4.3.0 try later"]
        db.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE status='pending'",
            ["2026-03-02T08:12:00.000000+00:00"],
        )
        rep = await deliver_due(db, settings, T0 + timedelta(minutes=12), limit=1)
        print("retried", rep.retried)
        # answers relayed (notification kind answer), a closed one, a reminder, a digest
        answer_enquiry(
            db,
            rows[0]["ref"],
            "Yes, consortia may apply.",
            actor="admin:1",
            now=T0 + timedelta(hours=1),
        )
        close_enquiry(db, rows[1]["ref"], actor="cli", now=T0 + timedelta(hours=2), note="dup")
        send_reminders(db, settings, T0 + timedelta(days=3))
        queue_digest(db, settings, T0 + timedelta(days=3, hours=1))
    journal = Journal(db)
    with db.conn:
        rid = journal.add_replies(
            1001,
            [
                OutMessage(1001, "<b>Ciao</b>", ((("faq:x", "Scadenza"),),)),
                OutMessage(1001, "second", reply_to=5),
            ],
            T0,
        )
    with db.conn:
        journal.mark_sent(rid, T0, 42)
    with db.conn:
        rid2 = journal.add_replies(
            1002, [OutMessage(1002, "pending reply")], T0 + timedelta(days=3)
        )
    # notification states: first admin post sent, one failed (forbidden), one skipped
    notes = list(db.query("SELECT id, kind FROM notifications ORDER BY id"))
    posts = [n["id"] for n in notes if n["kind"] == "enquiry_posted"]
    with db.conn:
        journal.mark_sent(posts[0], T0 + timedelta(minutes=1), 77)
        db.execute("UPDATE enquiries SET admin_message_id = 77 WHERE id = 1")
    journal.mark_failed(posts[1], "failed", "forbidden: bot was kicked")
    journal.mark_failed(posts[2], "skipped", "enquiry gone or erased")
    journal.mark_retry(posts[3], T0 + timedelta(minutes=5), "NetworkError", timedelta(seconds=10))
    # an erased user: their mails are cut
    forget_user(db, "telegram", "1005", now=T0 + timedelta(days=3, hours=2))
    db.execute(
        "INSERT INTO updates (update_id, payload, received_at, handled_at) VALUES (9001, '{\"update_id\":9001}', ?, NULL)",
        ["2026-03-05T08:00:00.000000+00:00"],
    )
    db.conn.commit()
    for t in ("outbox", "notifications", "enquiries"):
        print(t, list(db.query(f"SELECT status, count(*) n FROM {t} GROUP BY status")))
    out.write_text("\n".join(db.conn.iterdump()) + "\n")


asyncio.run(main(Path(sys.argv[1])))
