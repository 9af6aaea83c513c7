"""The SQLite schema as versioned migrations (sqlite-utils): applied by open_database.

A schema change is a new `@migrations(name="000N_...")` function at the end, never an edit
of an old one: databases written by earlier releases upgrade through every step.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("clusterbot")


@migrations(name="0001_initial")
def _initial(db: sqlite_utils.Database) -> None:
    # One conversation per (channel, user): language, form state and FAQ history as JSON.
    db.execute(
        """
        CREATE TABLE sessions (
            channel TEXT NOT NULL,
            user_id TEXT NOT NULL,
            lang TEXT,
            state TEXT NOT NULL DEFAULT '{}',
            updated_at TEXT NOT NULL,
            PRIMARY KEY (channel, user_id)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE enquiries (
            id INTEGER PRIMARY KEY,
            ref TEXT UNIQUE,
            channel TEXT NOT NULL,
            user_id TEXT,
            chat_id TEXT,
            username TEXT,
            lang TEXT NOT NULL,
            name TEXT,
            email TEXT,
            organisation TEXT,
            country TEXT,
            question TEXT,
            faq_history TEXT NOT NULL DEFAULT '[]',
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'answered', 'closed')),
            created_at TEXT NOT NULL,
            forwarded_at TEXT,
            answered_at TEXT,
            answered_by TEXT,
            answer TEXT,
            closed_at TEXT,
            closed_by TEXT,
            close_note TEXT,
            reminder_count INTEGER NOT NULL DEFAULT 0,
            last_reminder_at TEXT,
            admin_message_id INTEGER,
            erased_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX enquiries_status_created ON enquiries (status, created_at)")
    db.execute("CREATE INDEX enquiries_user ON enquiries (channel, user_id, created_at)")
    db.execute("CREATE INDEX enquiries_answered_at ON enquiries (answered_at)")
    db.execute("CREATE INDEX enquiries_closed_at ON enquiries (closed_at)")
    db.execute("CREATE INDEX enquiries_admin_message ON enquiries (admin_message_id)")
    # E-mails to send. `raw` is the complete RFC 5322 message, Message-ID included, so a
    # retry sends byte-identical mail.
    db.execute(
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            enquiry_id INTEGER REFERENCES enquiries(id),
            message_id TEXT NOT NULL UNIQUE,
            mail_from TEXT NOT NULL,
            rcpt_to TEXT NOT NULL,
            raw BLOB,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX outbox_due ON outbox (status, next_attempt_at)")
    db.execute("CREATE INDEX outbox_enquiry ON outbox (enquiry_id)")
    # Messages for chat channels (the admin chat post, relayed answers, failure reports),
    # delivered by the channel's own worker.
    db.execute(
        """
        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            kind TEXT NOT NULL,
            enquiry_id INTEGER REFERENCES enquiries(id),
            chat_id TEXT,
            text TEXT,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            sent_message_id INTEGER
        )
        """
    )
    db.execute("CREATE INDEX notifications_due ON notifications (channel, status, next_attempt_at)")
    # Who did what to which enquiry, and when. `detail` never holds personal data.
    db.execute(
        """
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            enquiry_id INTEGER,
            ref TEXT,
            actor TEXT NOT NULL,
            detail TEXT
        )
        """
    )
    db.execute("CREATE INDEX audit_enquiry ON audit (enquiry_id, at)")
    db.execute("CREATE INDEX audit_event_at ON audit (event, at)")
    # Telegram updates journaled before their offset is confirmed (crash safety).
    db.execute(
        """
        CREATE TABLE updates (
            update_id INTEGER PRIMARY KEY,
            payload TEXT NOT NULL,
            received_at TEXT NOT NULL,
            handled_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX updates_unhandled ON updates (handled_at, update_id)")
    # Small key/value facts, such as when the last digest ran.
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # FAQ look-ups, for /stats: hit rate and frequent fallback questions (no user ids).
    db.execute(
        """
        CREATE TABLE faq_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            lang TEXT NOT NULL,
            faq_id TEXT,
            score REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX faq_log_at ON faq_log (at)")


@migrations(name="0002_update_quarantine")
def _update_quarantine(db: sqlite_utils.Database) -> None:
    # An update that keeps failing is set aside: kept in the journal, reported, skipped.
    # `attempts` counts handling runs that began after a restart or ended in an error.
    db.execute("ALTER TABLE updates ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE updates ADD COLUMN quarantined_at TEXT")
    db.execute("ALTER TABLE updates ADD COLUMN last_error TEXT")


@migrations(name="0003_inbound_mail")
def _inbound_mail(db: sqlite_utils.Database) -> None:
    # Every e-mail read from the bot's mailbox (or imported), once: `message_id` makes the
    # pipeline idempotent. `raw` keeps the full original for the enquiry's history; it and
    # `sender`/`subject` are personal data, erased with the enquiry.
    db.execute(
        """
        CREATE TABLE inbound_mail (
            id INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            received_at TEXT NOT NULL,
            source TEXT NOT NULL,
            sender TEXT,
            subject TEXT,
            status TEXT NOT NULL CHECK (status IN
                ('answer', 'follow_up', 'bounce', 'auto_reply', 'refused', 'unmatched',
                 'ignored')),
            enquiry_id INTEGER REFERENCES enquiries(id),
            matched_by TEXT,
            reason TEXT,
            attachments INTEGER NOT NULL DEFAULT 0,
            answer TEXT,
            raw BLOB
        )
        """
    )
    db.execute("CREATE INDEX inbound_mail_enquiry ON inbound_mail (enquiry_id, received_at)")
    db.execute("CREATE INDEX inbound_mail_status ON inbound_mail (status, received_at)")
    # Where the IMAP reader stands in each folder: a restart resumes after `last_uid`, and a
    # new UIDVALIDITY (the folder was re-created) starts the folder over.
    db.execute(
        """
        CREATE TABLE inbox_cursor (
            folder TEXT PRIMARY KEY,
            uidvalidity INTEGER NOT NULL,
            last_uid INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )


@migrations(name="0004_web_transcripts")
def _web_transcripts(db: sqlite_utils.Database) -> None:
    # The web chat's conversation as the page shows it, so a reload (or a bot restart)
    # keeps it; `session` is the engine's user_id for channel "web" (a hash of the token).
    db.execute(
        """
        CREATE TABLE web_messages (
            id INTEGER PRIMARY KEY,
            session TEXT NOT NULL,
            at TEXT NOT NULL,
            sender TEXT NOT NULL,
            payload TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX web_messages_session ON web_messages (session, id)")


# Every outgoing message, whatever carries it (bot.deliveries). `idempotency_key` is stable
# across retries (the Message-ID for mail); a sender claims a row with a lease (owner and
# expiry) before sending it, so two senders never send it twice and a crashed sender's
# claim runs out.
DELIVERY_STATUSES = ("queued", "sending", "sent", "failed-temporary", "dead", "cancelled")


@migrations(name="0004_deliveries")
def _deliveries(db: sqlite_utils.Database) -> None:
    statuses = ", ".join(f"'{status}'" for status in DELIVERY_STATUSES)
    db.execute(
        f"""
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            transport TEXT NOT NULL,
            kind TEXT NOT NULL,
            enquiry_id INTEGER REFERENCES enquiries(id),
            sender TEXT,
            recipient TEXT,
            payload BLOB,
            idempotency_key TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ({statuses})),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            lease_owner TEXT,
            lease_until TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            sent_ref TEXT
        )
        """
    )
    db.execute("CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)")
    db.execute("CREATE INDEX deliveries_enquiry ON deliveries (enquiry_id)")
    # The mail queue moves over row by row, ids, Message-IDs and raw bytes unchanged: a
    # pending mail goes out byte-identical after the upgrade, a failed one stays dead.
    db.execute(
        """
        INSERT INTO deliveries (id, transport, kind, enquiry_id, sender, recipient, payload,
            idempotency_key, status, attempts, next_attempt_at, last_error, created_at, sent_at)
        SELECT id, 'smtp', kind, enquiry_id, mail_from, rcpt_to, raw, message_id,
            CASE status WHEN 'sent' THEN 'sent' WHEN 'failed' THEN 'dead'
                ELSE CASE WHEN attempts > 0 THEN 'failed-temporary' ELSE 'queued' END END,
            attempts, next_attempt_at, last_error, created_at, sent_at
        FROM outbox ORDER BY id
        """
    )
    db.execute("DROP TABLE outbox")


@migrations(name="0005_chat_deliveries")
def _chat_deliveries(db: sqlite_utils.Database) -> None:
    # The chat messages (Telegram posts, replies, relayed answers, failure reports; console
    # answers) join the one queue: transport = the channel, recipient = the chat, payload =
    # the text or the stored replies' JSON. A pending row's progress (pieces already sent,
    # kept in sent_message_id) stays in sent_ref, so nothing is sent twice.
    db.execute(
        """
        INSERT INTO deliveries (transport, kind, enquiry_id, recipient, payload,
            idempotency_key, status, attempts, next_attempt_at, last_error, created_at,
            sent_at, sent_ref)
        SELECT channel, kind, enquiry_id, chat_id, text, 'notification:' || id,
            CASE status WHEN 'sent' THEN 'sent' WHEN 'failed' THEN 'dead'
                WHEN 'skipped' THEN 'cancelled'
                ELSE CASE WHEN attempts > 0 THEN 'failed-temporary' ELSE 'queued' END END,
            attempts, next_attempt_at, last_error, created_at, sent_at,
            CAST(sent_message_id AS TEXT)
        FROM notifications ORDER BY id
        """
    )
    db.execute("DROP TABLE notifications")
    db.execute("CREATE INDEX deliveries_recipient ON deliveries (transport, recipient, status)")
