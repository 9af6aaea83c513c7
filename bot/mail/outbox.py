"""The outbox worker: deliver pending mails over SMTP with retries, and operator tools."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aiosmtplib

from bot.storage import dumps, record_audit, to_iso, transaction

if TYPE_CHECKING:
    import sqlite_utils

    from bot.settings import Settings

log = logging.getLogger(__name__)

# How many rows one call delivers over one connection; the caller loops for more.
BATCH_LIMIT = 500
# Temporary failures wait RETRY_BASE * 2**(attempts-1), capped, times a jitter in [0.5, 1].
# The cap is short because the bot sends little mail: a recovered server is found quickly.
RETRY_BASE = timedelta(seconds=5)
RETRY_CAP = timedelta(minutes=5)
# Mails deferred because the server could not be reached carry this error prefix; once a
# delivery succeeds again they are due at once instead of waiting out their backoff.
CONNECT_ERROR = "cannot connect"
# Accepted mails are marked sent in groups: at most this many, or this old, per commit.
FLUSH_ROWS = 100
FLUSH_SECONDS = 0.5
# A pending row this many attempts old is reported by `clusterbot check` as stuck.
STUCK_ATTEMPTS = 8
# Kept short in the table and the admin chat: a server reply can be long.
MAX_ERROR = 500

Security = Literal["starttls", "tls", "none"]


class OutboxError(Exception):
    """An operator request on the outbox that cannot be done (unknown id, wrong state)."""


class StartTLSUnavailable(aiosmtplib.SMTPException):
    """The server does not offer STARTTLS while smtp.security requires it."""


@dataclass
class DeliveryReport:
    """What one delivery run did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    partial: int = 0
    released: int = 0
    # Rows not sent because they were gone by the time their turn came: erased with their
    # enquiry (/forget), or a reminder for an enquiry answered or closed meanwhile.
    skipped: int = 0
    # The run read as many rows as its limit allowed: more may be due.
    batch_full: bool = False
    sent_ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        """Rows this run tried to deliver."""
        return self.sent + self.retried + self.failed

    @property
    def more_due(self) -> bool:
        """Worth another run at once: this one made progress and left rows due."""
        progressed = self.sent > 0 or self.skipped > 0
        return progressed and (self.batch_full or self.released > 0)

    def add(self, other: DeliveryReport) -> None:
        """Fold another run's counts into this one."""
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.partial += other.partial
        self.released += other.released
        self.skipped += other.skipped
        self.batch_full = other.batch_full
        self.sent_ids.extend(other.sent_ids)
        self.errors.extend(other.errors)


def count_mails(count: int) -> str:
    """'1 e-mail', '3 e-mails'."""
    return f"{count} e-mail" if count == 1 else f"{count} e-mails"


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect: from settings, or the embedded mail store."""

    hostname: str
    port: int
    security: Security
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    tls_context: ssl.SSLContext | None = None
    local_hostname: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        hostname: str | None = None,
        port: int | None = None,
        security: Security | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> SmtpTarget:
        """The target named by settings.smtp, with optional overrides (the embedded store)."""
        smtp = settings.smtp
        return cls(
            hostname=hostname if hostname is not None else smtp.host,
            port=port if port is not None else smtp.port,
            security=security if security is not None else smtp.security,
            username=smtp.username if hostname is None else "",
            password=smtp.password if hostname is None else "",
            timeout=smtp.timeout.total_seconds(),
            tls_context=tls_context,
            local_hostname="localhost" if hostname is not None else None,
        )


_fqdn: str | None = None


async def _local_hostname() -> str:
    """This host's name for EHLO, looked up once (getfqdn may do a slow DNS query)."""
    global _fqdn
    if _fqdn is None:
        _fqdn = await asyncio.to_thread(socket.getfqdn)
    return _fqdn


async def connect(target: SmtpTarget) -> aiosmtplib.SMTP:
    """Open an SMTP session per target.security and log in; raise on any failure."""
    client = aiosmtplib.SMTP(
        hostname=target.hostname or "localhost",
        port=target.port,
        timeout=target.timeout,
        use_tls=target.security == "tls",
        # STARTTLS is done below by hand, so that a server without it is refused, not used
        # in clear (aiosmtplib's default would silently go on without TLS).
        start_tls=False,
        validate_certs=True,
        tls_context=target.tls_context,
        local_hostname=target.local_hostname or await _local_hostname(),
    )
    await client.connect()
    try:
        if target.security == "starttls":
            await client.ehlo()
            if not client.supports_extension("starttls"):
                raise StartTLSUnavailable(
                    "the server does not offer STARTTLS and smtp.security is 'starttls': "
                    "refusing to send in clear"
                )
            await client.starttls()
        if target.username:
            await client.login(target.username, target.password)
    except BaseException:
        client.close()
        raise
    return client


def describe_smtp(settings: Settings, problems: Sequence[str] | None = None) -> str:
    """One line saying where mail goes, for `clusterbot check`.

    `problems` are probe_smtp's findings: [] means the probe succeeded, None that no probe
    was made (the line then only names the server).
    """
    smtp = settings.smtp
    if not smtp.host:
        return (
            "SMTP: embedded mail store (smtp.host is empty: mails are saved as .eml files "
            f"under {_display_path(settings.mail_dir)}, not sent)"
        )
    where = f"{smtp.host}:{smtp.port} (security {smtp.security})"
    action = "login to" if smtp.username else "connection to"
    if problems is None:
        login = f", login as {smtp.username!r}" if smtp.username else ", no login"
        return f"SMTP: {where}{login}; not probed (use --smtp)"
    if problems:
        return f"SMTP: {action} {where} FAILED"
    return f"SMTP: {action} {where} OK"


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


async def probe_smtp(settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> list[str]:
    """Connect (and log in) to the configured SMTP server; returns the problems found.

    With smtp.host empty there is nothing to probe (the embedded store is used): no problem.
    """
    if not settings.smtp.host:
        return []
    target = SmtpTarget.from_settings(settings, tls_context=tls_context)
    try:
        client = await connect(target)
    except Exception as exc:
        reason = _short(str(exc)) or type(exc).__name__
        return [
            f"smtp: cannot connect and log in to {target.hostname}:{target.port} "
            f"(security {target.security}): {reason}"
        ]
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
    return []


def retry_delay(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Capped exponential backoff with jitter for the `attempts`-th failure (1-based)."""
    exponent = min(max(attempts - 1, 0), 20)
    delay = min(RETRY_BASE * (2**exponent), RETRY_CAP)
    # Jitter spreads retries so a recovering server is not hit by every row at once.
    factor: float = 0.5 + (rng or random).random() / 2
    return timedelta(seconds=delay.total_seconds() * factor)


def _short(text: str) -> str:
    return " ".join(text.split())[:MAX_ERROR]


def _response_text(code: int, message: str) -> str:
    return _short(f"{code} {message}")


def _status_code(text: str) -> str:
    """The reply code and enhanced status only (e.g. '550 5.1.1'): safe for logs."""
    match = re.match(r"^(\d{3})(?:\s+(\d\.\d{1,3}\.\d{1,3}))?", text)
    if not match:
        return "no reply code"
    return " ".join(part for part in match.groups() if part)


def _classify(exc: BaseException) -> tuple[bool, bool, str]:
    """(permanent, connection_lost, error text) for an exception raised while sending."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [err.code for err in exc.recipients]
        text = "; ".join(
            _response_text(err.code, f"{err.message} ({err.recipient})") for err in exc.recipients
        )
        return all(code >= 500 for code in codes), False, _short(f"recipients refused: {text}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if not 400 <= exc.code <= 599:
            # A garbled or unexpected reply: the session cannot be trusted, start afresh.
            return False, True, _short(f"unexpected reply: {exc.code} {exc.message}")
        # 421 means the server is closing the connection: temporary, and reconnect.
        return exc.code >= 500, exc.code == 421, _response_text(exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return False, True, _short(f"timeout: {exc}")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError | OSError):
        return False, True, _short(f"connection lost: {exc}")
    if isinstance(exc, ValueError):
        return True, False, _short(f"invalid message or address: {exc}")
    return False, True, _short(f"{type(exc).__name__}: {exc}")


def insert_outbox(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    """Insert an outbox row (from compose.outbox_row); returns its id."""
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    cursor = db.execute(f"INSERT INTO outbox ({columns}) VALUES ({marks})", list(row.values()))
    return int(cursor.lastrowid or 0)


def _due_rows(db: sqlite_utils.Database, now: datetime, limit: int) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, id LIMIT ?",
            [to_iso(now), limit],
        )
    )


def _enquiry_ref(db: sqlite_utils.Database, enquiry_id: int | None) -> str | None:
    if enquiry_id is None:
        return None
    for row in db.query("SELECT ref FROM enquiries WHERE id = ?", [enquiry_id]):
        return str(row["ref"]) if row["ref"] else None
    return None


def _record_sent(
    db: sqlite_utils.Database, row: dict[str, Any], at: datetime, note: str | None
) -> bool:
    """Mark an accepted row sent and, for an enquiry mail, the enquiry forwarded (audited).

    False when the row was no longer pending (removed meanwhile): nothing was recorded.
    """
    conn = db.conn
    moment = to_iso(at)
    cursor = conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
        "last_error = ? WHERE id = ? AND status = 'pending'",
        (moment, note, row["id"]),
    )
    if not cursor.rowcount:
        # Deleted while it was being sent (its enquiry was erased): nothing left to record,
        # and above all no bookkeeping on an erased enquiry.
        log.info("outbox %d: accepted, but the row was removed meanwhile", row["id"])
        return False
    if row["kind"] == "enquiry" and row["enquiry_id"] is not None:
        found = conn.execute(
            "UPDATE enquiries SET forwarded_at = ? "
            "WHERE id = ? AND forwarded_at IS NULL AND erased_at IS NULL RETURNING ref",
            (moment, row["enquiry_id"]),
        ).fetchall()
        if found:
            conn.execute(
                "INSERT INTO audit (at, event, enquiry_id, ref, actor, detail) "
                "VALUES (?, 'forwarded', ?, ?, 'system', ?)",
                (moment, row["enquiry_id"], found[0][0], dumps({"outbox": row["id"]})),
            )
    return True


# Why a due row is not sent after all (see _check_due).
_GONE = "gone"
_ERASED = "erased"
_WITHDRAWN = "withdrawn"


def _check_due(db: sqlite_utils.Database, row: dict[str, Any]) -> str | None:
    """Re-read a row just before sending it: None if it is still to go, else why not.

    The batch was read before connecting; since then the user may have erased their data
    (the row is deleted) or the enquiry may have been answered (its reminder is moot).
    """
    current = db.conn.execute(
        "SELECT o.status, e.id, e.status, e.erased_at FROM outbox AS o "
        "LEFT JOIN enquiries AS e ON e.id = o.enquiry_id WHERE o.id = ?",
        (row["id"],),
    ).fetchone()
    if current is None or current[0] != "pending":
        return _GONE
    if row["enquiry_id"] is None:
        return None
    _, enquiry_id, enquiry_status, erased_at = current
    if enquiry_id is None or erased_at is not None:
        return _ERASED
    if row["kind"] == "reminder" and enquiry_status != "open":
        return _WITHDRAWN
    return None


def _drop(db: sqlite_utils.Database, row: dict[str, Any], why: str) -> None:
    """Delete a pending row that must not be sent (erased enquiry, moot reminder)."""
    with transaction(db):
        db.conn.execute("DELETE FROM outbox WHERE id = ? AND status = 'pending'", (row["id"],))
    # Ids and kinds only: nothing personal in the log.
    if why == _WITHDRAWN:
        log.info(
            "outbox %d (reminder): not sent, the enquiry is no longer open; removed", row["id"]
        )
    else:
        log.info(
            "outbox %d (%s): not sent, its enquiry was erased; removed", row["id"], row["kind"]
        )


def _release_deferred(db: sqlite_utils.Database, at: datetime) -> int:
    """The server is reachable again: mails waiting only for that are due now."""
    with transaction(db):
        cursor = db.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE status = 'pending' "
            "AND next_attempt_at > ? AND last_error LIKE ?",
            [to_iso(at), to_iso(at), CONNECT_ERROR + "%"],
        )
    return int(cursor.rowcount or 0)


def _mark_retry(
    db: sqlite_utils.Database,
    row: dict[str, Any],
    at: datetime,
    error: str,
    rng: random.Random | None,
) -> None:
    attempts = int(row["attempts"]) + 1
    with transaction(db):
        db.execute(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? "
            "WHERE id = ? AND status = 'pending'",
            [attempts, to_iso(at + retry_delay(attempts, rng)), error, row["id"]],
        )


def _report_failure(
    db: sqlite_utils.Database,
    settings: Settings,
    row: dict[str, Any],
    at: datetime,
    error: str,
    *,
    partial: bool,
    queue_notice: bool,
) -> None:
    """Audit, admin-chat notification and (for message-level refusals) a notice mail."""
    from bot.mail.compose import ComposeError, failure_mail, failure_text, outbox_row

    ref = _enquiry_ref(db, row["enquiry_id"])
    # The server's reply may quote addresses: the audit keeps only its status code.
    detail = {"outbox": row["id"], "kind": row["kind"], "code": _status_code(error)}
    if partial:
        detail["partial"] = True
    record_audit(
        db,
        "mail_failed",
        actor="system",
        now=at,
        enquiry_id=row["enquiry_id"],
        ref=ref,
        detail=detail,
    )
    report_row = {**row, "attempts": int(row["attempts"]) + 1}
    if settings.telegram.admin_chat_id != 0:
        text = failure_text(settings, report_row, error, ref)
        db.execute(
            "INSERT INTO notifications (channel, kind, enquiry_id, chat_id, text, status, "
            "attempts, next_attempt_at, created_at) "
            "VALUES ('telegram', 'mail_failed', ?, ?, ?, 'pending', 0, ?, ?)",
            [row["enquiry_id"], str(settings.telegram.admin_chat_id), text, to_iso(at), to_iso(at)],
        )
    if queue_notice and row["kind"] != "failure":
        try:
            notice = failure_mail(settings, report_row, error, ref, at)
        except ComposeError:
            return
        insert_outbox(db, outbox_row(notice, "failure", row["enquiry_id"], at))


def _mark_failed(
    db: sqlite_utils.Database,
    settings: Settings,
    row: dict[str, Any],
    at: datetime,
    error: str,
    *,
    recipient_refused: bool,
) -> None:
    with transaction(db):
        cursor = db.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? "
            "WHERE id = ? AND status = 'pending'",
            [error, row["id"]],
        )
        if cursor.rowcount:
            # A refused recipient would refuse the notice too: only message-level refusals
            # (size, content) get a notice mail; the admin chat hears of every failure.
            _report_failure(
                db, settings, row, at, error, partial=False, queue_notice=not recipient_refused
            )


def _mark_partial(
    db: sqlite_utils.Database,
    settings: Settings,
    row: dict[str, Any],
    at: datetime,
    refused: dict[str, aiosmtplib.SMTPResponse],
) -> str:
    note = _short(
        "accepted, but refused for: "
        + "; ".join(f"{rcpt}: {resp.code} {resp.message}" for rcpt, resp in refused.items())
    )
    with transaction(db):
        if _record_sent(db, row, at, note):
            _report_failure(db, settings, row, at, note, partial=True, queue_notice=False)
    return note


class _Batch:
    """One delivery run: its clock, its report, and the accepted rows not yet recorded."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        settings: Settings,
        now: datetime,
        rng: random.Random | None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.now = now
        self.rng = rng
        self.report = DeliveryReport()
        self.started = time.monotonic()
        self.accepted: list[tuple[dict[str, Any], datetime]] = []
        self.flushed_at = self.started
        self._timer: asyncio.Handle | None = None

    def moment(self) -> datetime:
        """The caller's `now`, advanced by the real time elapsed during the batch."""
        return self.now + timedelta(seconds=time.monotonic() - self.started)

    def accept(self, row: dict[str, Any]) -> None:
        """The server accepted `row`: record it soon (in a group commit)."""
        self.accepted.append((row, self.moment()))
        self.report.sent += 1
        self.report.sent_ids.append(int(row["id"]))
        loop = asyncio.get_running_loop()
        if len(self.accepted) >= FLUSH_ROWS:
            # Written as soon as the next send waits for the server (call_soon runs at the
            # loop's next turn): the commit overlaps the network wait instead of adding to it.
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_soon(self._on_timer)
        elif self._timer is None:
            # Should the next send stall (up to smtp.timeout), this mark is still written
            # within FLUSH_SECONDS: a kill meanwhile resends as little as possible.
            self._timer = loop.call_later(FLUSH_SECONDS, self._on_timer)

    def flush_if_stale(self) -> None:
        """Before a send: record the pending marks if the last flush is FLUSH_SECONDS old."""
        if self.accepted and time.monotonic() - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        if not self.accepted:
            return
        if self.db.conn.in_transaction:
            # Someone else's transaction is open on this connection (across an await): do
            # not write into it; try again shortly.
            self._timer = asyncio.get_running_loop().call_later(0.05, self._on_timer)
            return
        try:
            self.flush()
        except Exception:
            # The marks stay pending; the batch's own flush tries again and raises then.
            log.exception("outbox: recording accepted mails failed, will retry")

    def flush(self) -> None:
        """Mark every accepted row sent in one transaction."""
        # One commit (one fsync) per group instead of per mail. A crash before it only
        # means these mails go out again with the same Message-ID: at-least-once holds.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flushed_at = time.monotonic()
        if not self.accepted:
            return
        with transaction(self.db):
            for row, at in self.accepted:
                _record_sent(self.db, row, at, None)
        # Forgotten only once committed: a failed flush keeps them for the next one.
        self.accepted = []

    def skip(self, row: dict[str, Any], why: str) -> None:
        """A due row that must not be sent after all (see _check_due)."""
        self.report.skipped += 1
        if why == _GONE:
            log.info("outbox %d (%s): no longer pending, not sent", row["id"], row["kind"])
        else:
            _drop(self.db, row, why)


async def deliver_due(
    db: sqlite_utils.Database,
    settings: Settings,
    now: datetime,
    *,
    target: SmtpTarget | None = None,
    tls_context: ssl.SSLContext | None = None,
    limit: int = BATCH_LIMIT,
    rng: random.Random | None = None,
) -> DeliveryReport:
    """Send the pending rows due at `now` over one SMTP connection; record every outcome."""
    rows = _due_rows(db, now, limit)
    batch = _Batch(db, settings, now, rng)
    batch.report.batch_full = len(rows) >= limit
    if not rows:
        return batch.report
    target = target or SmtpTarget.from_settings(settings, tls_context=tls_context)
    client: aiosmtplib.SMTP | None = None
    polite = False
    try:
        for index, row in enumerate(rows):
            # Re-checked right before sending: the rows were read before connecting.
            why = _check_due(db, row)
            if why is not None:
                batch.skip(row, why)
                continue
            if client is None or not client.is_connected:
                # Connecting may take up to smtp.timeout: record what was accepted first.
                batch.flush()
                try:
                    client = await connect(target)
                except Exception as exc:
                    reason = _short(str(exc)) or type(exc).__name__
                    error = f"{CONNECT_ERROR} to {target.hostname}:{target.port}: {reason}"
                    waiting = count_mails(len(rows) - index)
                    log.warning("outbox: %s; %s wait for a retry", error, waiting)
                    with transaction(db):
                        for pending in rows[index:]:
                            _mark_retry(db, pending, batch.moment(), error, rng)
                            batch.report.retried += 1
                    batch.report.errors.append(error)
                    return batch.report
                why = _check_due(db, row)
                if why is not None:
                    batch.skip(row, why)
                    continue
            batch.flush_if_stale()
            await _send_one(batch, client, row)
        polite = True
    finally:
        # Recorded before anything else can fail or be cancelled.
        batch.flush()
        if batch.report.sent:
            batch.report.released = _release_deferred(db, batch.moment())
        if client is not None and client.is_connected:
            if polite:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
            else:
                # Cancelled (shutdown) or failing: do not wait for a QUIT reply.
                client.close()
    return batch.report


async def _send_one(batch: _Batch, client: aiosmtplib.SMTP, row: dict[str, Any]) -> None:
    db, settings, report = batch.db, batch.settings, batch.report
    recipients: Sequence[str] = json.loads(row["rcpt_to"])
    raw: bytes = row["raw"] or b""
    try:
        if not raw:
            raise ValueError("the stored message is empty (erased?)")
        refused, _ = await client.sendmail(row["mail_from"], recipients, raw)
    except Exception as exc:
        permanent, lost, error = _classify(exc)
        if lost:
            client.close()
        if permanent:
            recipient_refused = isinstance(
                exc, aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPSenderRefused
            )
            _mark_failed(
                db, settings, row, batch.moment(), error, recipient_refused=recipient_refused
            )
            log.error(
                "outbox %d (%s): refused permanently (%s); run 'clusterbot outbox retry %d' "
                "once fixed",
                row["id"],
                row["kind"],
                _status_code(error),
                row["id"],
            )
            report.failed += 1
        else:
            _mark_retry(db, row, batch.moment(), error, batch.rng)
            log.warning(
                "outbox %d (%s): temporary failure (%s), will retry",
                row["id"],
                row["kind"],
                _status_code(error) if not lost else error.split(":")[0],
            )
            report.retried += 1
        report.errors.append(f"outbox {row['id']}: {error}")
        return
    if refused:
        note = _mark_partial(db, settings, row, batch.moment(), refused)
        log.warning(
            "outbox %d (%s): accepted for some recipients only (%d refused)",
            row["id"],
            row["kind"],
            len(refused),
        )
        report.partial += 1
        report.sent += 1
        report.sent_ids.append(int(row["id"]))
        report.errors.append(f"outbox {row['id']}: {note}")
    else:
        batch.accept(row)
    log.debug("outbox %d (%s): accepted", row["id"], row["kind"])


# ---------------------------------------------------------------- operator tools


def _subject(raw: bytes | None) -> str:
    if not raw:
        return ""
    headers = BytesHeaderParser(policy=default_policy).parsebytes(raw)
    return str(headers.get("Subject", ""))


def list_outbox(db: sqlite_utils.Database, status: str | None = None) -> list[dict[str, Any]]:
    """Outbox rows (oldest first) without the raw message, plus its subject and size."""
    sql = "SELECT * FROM outbox"
    params: list[Any] = []
    if status is not None:
        sql += " WHERE status = ?"
        params.append(status)
    rows = []
    for row in db.query(sql + " ORDER BY id", params):
        raw = row.pop("raw")
        row["rcpt_to"] = json.loads(row["rcpt_to"])
        row["subject"] = _subject(raw)
        row["size"] = len(raw or b"")
        row["ref"] = _enquiry_ref(db, row["enquiry_id"])
        rows.append(row)
    return rows


def requeue(
    db: sqlite_utils.Database,
    which: int | Literal["all_failed"],
    now: datetime,
    *,
    actor: str = "cli",
) -> list[int]:
    """Put failed rows back in the queue for delivery now; returns their ids."""
    with transaction(db):
        if which == "all_failed":
            rows = list(db.query("SELECT * FROM outbox WHERE status = 'failed' ORDER BY id"))
        else:
            rows = list(db.query("SELECT * FROM outbox WHERE id = ?", [which]))
            if not rows:
                raise OutboxError(f"no outbox message with id {which}")
            if rows[0]["status"] != "failed":
                raise OutboxError(
                    f"outbox message {which} is {rows[0]['status']}: only failed messages "
                    "can be retried"
                )
        for row in rows:
            db.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
                "WHERE id = ?",
                [to_iso(now), row["id"]],
            )
            ref = _enquiry_ref(db, row["enquiry_id"])
            record_audit(
                db,
                "requeued",
                actor=actor,
                now=now,
                enquiry_id=row["enquiry_id"],
                ref=ref,
                detail={"outbox": row["id"]},
            )
    return [int(row["id"]) for row in rows]


def failed_problems(db: sqlite_utils.Database) -> list[str]:
    """One line per failed or stuck outbox message, for `clusterbot check`."""
    problems = []
    for row in db.query(
        "SELECT * FROM outbox WHERE status = 'failed' OR (status = 'pending' AND attempts >= ?) "
        "ORDER BY id",
        [STUCK_ATTEMPTS],
    ):
        ref = _enquiry_ref(db, row["enquiry_id"])
        what = f"outbox {row['id']} ({row['kind']}{', ' + ref if ref else ''})"
        if row["status"] == "failed":
            problems.append(
                f"{what}: refused permanently by the mail server: {row['last_error']}; "
                f"fix the cause, then run 'clusterbot outbox retry {row['id']}'"
            )
        else:
            problems.append(
                f"{what}: still not delivered after {row['attempts']} attempts: "
                f"{row['last_error']}; check the [smtp] settings with 'clusterbot check --smtp'"
            )
    return problems


def outbox_counts(db: sqlite_utils.Database) -> dict[str, int]:
    """How many outbox rows are in each status."""
    counts = {"pending": 0, "sent": 0, "failed": 0}
    for row in db.query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status"):
        counts[str(row["status"])] = int(row["n"])
    return counts


__all__ = [
    "BATCH_LIMIT",
    "DeliveryReport",
    "OutboxError",
    "SmtpTarget",
    "StartTLSUnavailable",
    "connect",
    "count_mails",
    "deliver_due",
    "describe_smtp",
    "failed_problems",
    "insert_outbox",
    "list_outbox",
    "outbox_counts",
    "probe_smtp",
    "requeue",
    "retry_delay",
]


def mark_bounced(
    db: sqlite_utils.Database, settings: Settings, message_ids: Sequence[str], at: datetime
) -> int:
    """Mark the sent mails a bounce reports on as failed, and report each; returns how many.

    Runs inside the caller's transaction (the inbound pipeline records the bounce with it).
    """
    failed = 0
    for message_id in dict.fromkeys(message_ids):
        for row in list(
            db.query("SELECT * FROM outbox WHERE message_id = ? AND status = 'sent'", [message_id])
        ):
            error = "bounced: the receiving mail server returned it as undeliverable"
            db.execute(
                "UPDATE outbox SET status = 'failed', last_error = ? WHERE id = ?",
                [error, row["id"]],
            )
            # A bounce means the recipient is unreachable: no notice mail to the same place.
            _report_failure(db, settings, row, at, error, partial=False, queue_notice=False)
            failed += 1
    return failed
