"""The secretariat's side of Telegram: admin commands and the texts of admin-chat posts.

No Telegram import: functions take the database and return OutMessage values, so they run
inside the update's transaction and their messages are stored before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlite_utils

from bot import enquiries, stats
from bot.channels.telegram_journal import OutMessage
from bot.channels.telegram_render import (
    ChannelTexts,
    admin_data,
    callback_data,
    lines,
    to_html_chunks,
)
from bot.mail.compose import actor_name as compose_actor_name
from bot.mail.compose import country_name, language_name
from bot.settings import Settings
from bot.storage import from_iso

ADMIN_COMMANDS = ("open", "reply", "close", "stats")
OPEN_LIST_MAX = 40
# The admin post shows this much of the question; the e-mail carries all of it.
POST_QUESTION_MAX = 3000


def is_admin(settings: Settings, user_id: int | None) -> bool:
    """Whether this Telegram user may use the admin commands."""
    return user_id is not None and user_id in settings.telegram.admin_user_ids


def actor_name(actor: str | None, lang: str = "en") -> str:
    """How an audit actor is shown in the admin chat, in the secretariat's language."""
    return compose_actor_name(actor, lang) if actor else "?"


def _short_time(settings: Settings, value: str | None) -> str:
    if not value:
        return "-"
    from zoneinfo import ZoneInfo

    moment = from_iso(value).astimezone(ZoneInfo(settings.timezone))
    return moment.strftime("%Y-%m-%d %H:%M")


def _age(now: datetime, created: str) -> str:
    seconds = max(0, int((now - from_iso(created)).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours = rest // 3600
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {rest % 3600 // 60}m"


def post_messages(
    settings: Settings, texts: ChannelTexts, row: Mapping[str, Any], chat_id: int
) -> OutMessage:
    """The admin-chat post of an enquiry, with its status and the buttons that still apply."""
    lang = settings.secretariat.language
    question = row.get("question") or ""
    if len(question) > POST_QUESTION_MAX:
        question = question[:POST_QUESTION_MAX] + " […]"
    if row.get("erased_at"):
        body = texts.get(lang, "post_erased")
    else:
        body = texts.get(
            lang,
            "post_fields",
            name=row.get("name") or "-",
            email=row.get("email") or "-",
            organisation=row.get("organisation") or "-",
            country=country_name(row.get("country") or "", lang) or "-",
            language=language_name(row.get("lang") or "", lang) or "-",
            username=row.get("username") or "",
            created=_short_time(settings, row.get("created_at")),
            question=question,
        )
    status = row.get("status")
    footer = ""
    buttons: tuple[tuple[tuple[str, str], ...], ...] = ()
    ref = str(row["ref"])
    if status == "open":
        footer = texts.get(lang, "post_hint")
        buttons = (
            (
                (admin_data("answered", ref), texts.get(lang, "button_answered")),
                (admin_data("close", ref), texts.get(lang, "button_close")),
            ),
        )
    elif status == "answered":
        footer = lines(
            [
                texts.get(
                    lang,
                    "post_status_answered",
                    actor=actor_name(row.get("answered_by"), lang),
                    at=_short_time(settings, row.get("answered_at")),
                ),
                texts.get(lang, "post_hint"),
            ]
        )
        buttons = (((admin_data("close", ref), texts.get(lang, "button_close")),),)
    elif status == "closed":
        footer = texts.get(
            lang,
            "post_status_closed",
            actor=actor_name(row.get("closed_by"), lang),
            at=_short_time(settings, row.get("closed_at")),
        )
    chunks = to_html_chunks(f"{body}\n\n{footer}", texts.get(lang, "post_title", ref=ref))
    # One message: replies to it must find the enquiry; the question was trimmed to fit.
    return OutMessage(chat_id, chunks[0], buttons)


def follow_up_post_messages(
    settings: Settings, texts: ChannelTexts, row: Mapping[str, Any], text: str, chat_id: int
) -> OutMessage:
    """The admin-chat post of an applicant's follow-up: replying to it answers the enquiry."""
    lang = settings.secretariat.language
    ref = str(row["ref"])
    if row.get("erased_at"):
        body = texts.get(lang, "post_erased")
    else:
        if len(text) > POST_QUESTION_MAX:
            text = text[:POST_QUESTION_MAX] + " […]"
        body = lines(
            [
                texts.get(
                    lang,
                    "follow_up_post_from",
                    name=row.get("name") or "-",
                    email=row.get("email") or "-",
                ),
                "",
                text,
                "",
                texts.get(lang, "post_hint"),
            ]
        )
    chunks = to_html_chunks(body, texts.get(lang, "follow_up_post_title", ref=ref))
    # One message: replies to it must find the enquiry; the text was trimmed to fit.
    return OutMessage(chat_id, chunks[0])


def answer_messages(texts: ChannelTexts, row: Mapping[str, Any], chat_id: int) -> list[OutMessage]:
    """The secretariat's answer as the applicant receives it, prefixed with the reference."""
    lang = row.get("lang") or "en"
    body = f"{row.get('text') or ''}\n\n{texts.get(lang, 'answer_footer')}"
    ref = str(row.get("ref") or "")
    title = texts.get(lang, "answer_title", ref=ref)
    chunks = to_html_chunks(body, title)
    # Under the last piece: write again about this enquiry (the engine's follow-up flow).
    follow_up = (((callback_data(f"fu:{ref}"), texts.get(lang, "button_follow_up", ref=ref)),),)
    return [
        OutMessage(chat_id, chunk, buttons=follow_up if ref and i == len(chunks) - 1 else ())
        for i, chunk in enumerate(chunks)
    ]


def mail_failed_messages(
    settings: Settings, texts: ChannelTexts, text: str, chat_id: int
) -> list[OutMessage]:
    """A failed e-mail report for the admin chat."""
    title = texts.get(settings.secretariat.language, "mail_failed_title")
    return [OutMessage(chat_id, chunk) for chunk in to_html_chunks(text, title)]


def plain(chat_id: int, text: str, reply_to: int | None = None) -> list[OutMessage]:
    """Plain text (escaped) as one or more messages."""
    chunks = to_html_chunks(text)
    return [
        OutMessage(chat_id, chunk, reply_to=reply_to if i == 0 else None)
        for i, chunk in enumerate(chunks)
    ]


class AdminCommands:
    """/open, /reply, /close, /stats and replies to posts; callers check is_admin first."""

    def __init__(self, db: sqlite_utils.Database, settings: Settings, texts: ChannelTexts):
        self.db = db
        self.settings = settings
        self.texts = texts

    @property
    def lang(self) -> str:
        """The secretariat's language."""
        return self.settings.secretariat.language

    def t(self, key: str, **values: Any) -> str:
        """One admin text."""
        return self.texts.get(self.lang, key, **values)

    def error_text(self, ref: str, exc: enquiries.EnquiryError) -> str:
        """What went wrong, in the secretariat's language when the error has a known code."""
        key = f"error_{exc.code}"
        if exc.code and self.texts.has(self.lang, key):
            return self.t(key, **{"ref": ref, **exc.params})
        return self.t("admin_error", ref=ref, message=str(exc))

    def command(
        self, name: str, args: str, *, user_id: int, chat_id: int, now: datetime
    ) -> list[OutMessage]:
        """Run an admin command; returns the messages for the chat it came from."""
        actor = f"admin:{user_id}"
        if name == "open":
            return plain(chat_id, self.open_list(now))
        if name == "stats":
            return plain(chat_id, self.stats_text())
        if name == "reply":
            ref, _, text = args.strip().partition(" ")
            if not ref or not text.strip():
                # A newline may separate the reference from the text as well.
                ref, _, text = args.strip().partition("\n")
            if not ref.strip() or not text.strip():
                return plain(chat_id, self.t("reply_usage"))
            return self.answer(ref.strip(), text, actor=actor, chat_id=chat_id, now=now)
        if name == "close":
            ref, _, note = args.strip().partition(" ")
            if not ref:
                return plain(chat_id, self.t("close_usage"))
            return self.close(ref, note or None, actor=actor, chat_id=chat_id, now=now)
        return plain(chat_id, self.t("not_allowed"))

    def answer(
        self, ref: str, text: str, *, actor: str, chat_id: int, now: datetime
    ) -> list[OutMessage]:
        """Relay an answer: it is queued for the applicant; the enquiry becomes answered once
        it reached them (else the admin chat hears what to do instead)."""
        try:
            row = enquiries.answer_enquiry(
                self.db, ref, text, actor=actor, now=now, settings=self.settings
            )
        except enquiries.EnquiryError as exc:
            return plain(chat_id, self.error_text(ref, exc))
        return plain(chat_id, self.t("relay_done", ref=row["ref"]))

    def close(
        self, ref: str, note: str | None, *, actor: str, chat_id: int, now: datetime
    ) -> list[OutMessage]:
        """Close an enquiry without a reply."""
        try:
            row = enquiries.close_enquiry(self.db, ref, actor=actor, now=now, note=note)
        except enquiries.EnquiryError as exc:
            return plain(chat_id, self.error_text(ref, exc))
        return plain(chat_id, self.t("closed_done", ref=row["ref"]))

    def mark_answered(
        self, ref: str, *, actor: str, chat_id: int, now: datetime
    ) -> list[OutMessage]:
        """The post's "answered" button: answered elsewhere (by e-mail, by phone).

        The enquiry becomes answered like with a typed reply, and the applicant is told, in
        their language, that the answer went to their e-mail address.
        """
        row = enquiries.get_enquiry(self.db, ref)
        if row is None:
            return plain(chat_id, self.t("unknown_ref", ref=ref))
        notice = self.texts.get(row.get("lang") or "en", "answered_elsewhere", ref=row["ref"])
        try:
            done = enquiries.answer_enquiry(
                self.db, ref, notice, actor=actor, now=now, answered_now=True
            )
        except enquiries.EnquiryError as exc:
            return plain(chat_id, self.error_text(ref, exc))
        return plain(chat_id, self.t("answered_done", ref=done["ref"]))

    def enquiry_for_post(self, message_id: int) -> dict[str, Any] | None:
        """The enquiry whose admin-chat post (its own, or a follow-up's) has this message id."""
        return enquiries.enquiry_for_admin_post(self.db, message_id)

    def open_list(self, now: datetime) -> str:
        """Open enquiries, oldest first."""
        rows = enquiries.list_enquiries(self.db, "open")
        if not rows:
            return self.t("open_none")
        shown = [
            self.t(
                "open_line",
                ref=row["ref"],
                age=_age(now, row["created_at"]),
                organisation=row.get("organisation") or "-",
                country=country_name(row.get("country") or "", self.lang) or "-",
            )
            for row in rows[:OPEN_LIST_MAX]
        ]
        more = len(rows) - len(shown)
        return lines(
            [
                self.t("open_title", count=len(rows)),
                *shown,
                self.t("open_more", count=more) if more > 0 else "",
            ]
        )

    def stats_text(self) -> str:
        """The /stats report."""
        figures = stats.load(self.db)
        none = self.t("stats_none")
        median = figures.median_answer
        if median is None:
            median_text = none
        else:
            hours, rest = divmod(int(median.total_seconds()), 3600)
            median_text = f"{hours}h {rest // 60}m"
        rate = figures.hit_rate
        topics = ", ".join(f"{word} ({count})" for word, count in figures.fallback_topics)
        body = self.t(
            "stats_body",
            total=figures.total,
            open=figures.counts.get("open", 0),
            answered=figures.counts.get("answered", 0),
            closed=figures.counts.get("closed", 0),
            median=median_text,
            faq_total=figures.faq_total,
            hit_rate=none if rate is None else f"{rate:.0%}",
            fallbacks=topics or none,
        )
        return f"{self.t('stats_title')}\n{body}"
