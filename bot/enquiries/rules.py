"""Delivery outcomes for enquiries: the queue's one outcome hook, and bounces."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlite_utils

from bot.deliveries import store as deliveries
from bot.deliveries.model import Dead, Delivery, Outcome, Retry, Sent
from bot.enquiries.admin_chat import admin_chat_id
from bot.enquiries.lifecycle import grouped_reminder_moot
from bot.enquiries.queries import enquiry_by_id
from bot.enquiries.records import POST_ERASED, chat_delivery
from bot.settings import Settings
from bot.storage import (
    dumps,
    record_audit,
    to_iso,
)


def mark_bounced(
    db: sqlite_utils.Database, settings: Settings, message_ids: Sequence[str], at: datetime
) -> int:
    """The sent mails a bounce reports on become dead and are reported; returns how many.

    Runs inside the caller's transaction (the inbound pipeline records the bounce with it).
    """
    error = "bounced: the receiving mail server returned it as undeliverable"
    rules = DeliveryRules(settings)
    bounced = deliveries.mark_bounced(db, message_ids, error)
    for delivery in bounced:
        # The recipient is unreachable: no notice mail to the same place.
        rules.report_mail_failed(db, delivery, error, at, partial=False, notice=False)
    return len(bounced)


# ---------------------------------------------------------------- delivery outcomes


def _text(payload: bytes | str | None) -> str:
    return payload.decode() if isinstance(payload, bytes) else str(payload or "")


class DeliveryRules:
    """What deliveries mean for enquiries: the queue's one outcome hook (OutcomeHook).

    The worker calls it inside the transaction that records each outcome, so an enquiry's
    state and its deliveries never disagree.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def withdrawn(self, db: sqlite_utils.Database, delivery: Delivery) -> str | None:
        """A delivery of an erased enquiry, or a reminder of one answered since, is moot."""
        if delivery.kind == "reminders":
            return grouped_reminder_moot(db, delivery)
        if delivery.enquiry_id is None or delivery.kind == POST_ERASED:
            # (The edit that hides an erased enquiry's post is what erasure asks for.)
            return None
        found = db.conn.execute(
            "SELECT status, erased_at FROM enquiries WHERE id = ?", (delivery.enquiry_id,)
        ).fetchone()
        if found is None or found[1] is not None:
            return "its enquiry was erased"
        if delivery.kind == "reminder" and found[0] != "open":
            return "the enquiry is no longer open"
        return None

    def settled(
        self, db: sqlite_utils.Database, delivery: Delivery, outcome: Outcome, at: datetime
    ) -> None:
        """Record what an outcome changes for the enquiry, and report failures."""
        if isinstance(outcome, Retry):
            return
        if delivery.transport != "smtp":
            self._chat_settled(db, delivery, outcome, at)
            return
        if isinstance(outcome, Sent):
            if delivery.kind == "enquiry" and delivery.enquiry_id is not None:
                self._forwarded(db, delivery, at)
            if outcome.refused:
                self.report_mail_failed(
                    db, delivery, outcome.refused, at, partial=True, notice=False
                )
            return
        if delivery.kind == "answer" and delivery.enquiry_id is not None:
            answered = enquiry_by_id(db, delivery.enquiry_id)
            if answered is not None:
                self._answer_undelivered(db, answered, delivery, outcome, at)
        # A refused recipient would refuse the notice too: only message-level refusals
        # (size, content) get a notice mail; the admin chat hears of every failure.
        self.report_mail_failed(
            db, delivery, outcome.reason, at, partial=False, notice=not outcome.recipient_refused
        )

    def _chat_settled(
        self, db: sqlite_utils.Database, delivery: Delivery, outcome: Outcome, at: datetime
    ) -> None:
        if delivery.enquiry_id is None:
            return
        row = enquiry_by_id(db, delivery.enquiry_id)
        if row is None:
            return
        if isinstance(outcome, Sent):
            if delivery.kind == "enquiry_posted" and outcome.ref and outcome.ref.isdigit():
                db.conn.execute(
                    "UPDATE enquiries SET admin_message_id = ? WHERE id = ?",
                    (int(outcome.ref), row["id"]),
                )
            return
        if isinstance(outcome, Dead) and delivery.kind == "answer":
            self._answer_undelivered(db, row, delivery, outcome, at)

    def _answer_undelivered(
        self,
        db: sqlite_utils.Database,
        row: dict[str, Any],
        delivery: Delivery,
        outcome: Dead,
        at: datetime,
    ) -> None:
        """One way of the answer failed for good (the applicant blocked the bot, the chat is
        gone, the address refused it). While another way still carries it, nothing to do;
        when none is left the enquiry is not answered after all, and the secretariat hears
        what to do."""
        if deliveries.alive_of_kind(db, row["id"], "answer", besides=delivery.id):
            return
        if row["status"] == "answered":
            db.conn.execute(
                "UPDATE enquiries SET status = 'open', answered_at = NULL WHERE id = ?",
                (row["id"],),
            )
        record_audit(
            db,
            "answer_failed",
            actor="system",
            now=at,
            enquiry_id=row["id"],
            ref=row["ref"],
            detail={"delivery": delivery.id, "transport": delivery.transport},
        )
        admin_chat = admin_chat_id(db, self.settings)
        if admin_chat != 0:
            chat_delivery(
                db,
                channel="telegram",
                kind="answer_undelivered",
                enquiry_id=row["id"],
                recipient=str(admin_chat),
                payload=dumps({"reason": outcome.reason.split(":")[0]}),
                now=at,
            )

    def _forwarded(self, db: sqlite_utils.Database, delivery: Delivery, at: datetime) -> None:
        moment = to_iso(at)
        found = db.conn.execute(
            "UPDATE enquiries SET forwarded_at = ? "
            "WHERE id = ? AND forwarded_at IS NULL AND erased_at IS NULL RETURNING ref",
            (moment, delivery.enquiry_id),
        ).fetchall()
        if found:
            record_audit(
                db,
                "forwarded",
                actor="system",
                now=at,
                enquiry_id=delivery.enquiry_id,
                ref=found[0][0],
                detail={"delivery": delivery.id},
            )

    def report_mail_failed(
        self,
        db: sqlite_utils.Database,
        delivery: Delivery,
        error: str,
        at: datetime,
        *,
        partial: bool,
        notice: bool,
    ) -> None:
        from bot.deliveries.smtp import status_code
        from bot.mail.compose import ComposeError, failure_mail, failure_text, mail_delivery

        ref = deliveries.enquiry_ref(db, delivery.enquiry_id)
        # The server's reply may quote addresses: the audit keeps only its status code.
        detail: dict[str, Any] = {
            "delivery": delivery.id,
            "kind": delivery.kind,
            "code": status_code(error),
        }
        if partial:
            detail["partial"] = True
        record_audit(
            db,
            "mail_failed",
            actor="system",
            now=at,
            enquiry_id=delivery.enquiry_id,
            ref=ref,
            detail=detail,
        )
        facts = {
            "id": delivery.id,
            "kind": delivery.kind,
            "message_id": delivery.idempotency_key,
            "created_at": delivery.created_at,
            "attempts": delivery.attempts + 1,
        }
        settings = self.settings
        admin_chat = admin_chat_id(db, settings)
        if admin_chat != 0:
            chat_delivery(
                db,
                channel="telegram",
                kind="mail_failed",
                enquiry_id=delivery.enquiry_id,
                recipient=str(admin_chat),
                payload=failure_text(settings, facts, error, ref),
                now=at,
            )
        if notice and delivery.kind != "failure":
            try:
                message = failure_mail(settings, facts, error, ref, at)
            except ComposeError:
                return
            deliveries.enqueue(db, mail_delivery(message, "failure", delivery.enquiry_id), at)
