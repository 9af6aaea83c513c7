"""[enquiries], [reminders] and [digest]: how enquiries are taken, how the secretariat is
reminded of open ones, and when the digest is sent."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import Field, field_validator

from bot.settings.durations import PositiveDuration
from bot.settings.section import Section, TimeZoneName


class EnquirySettings(Section):
    reference_prefix: str = "ECCP"
    max_per_day: int = Field(default=3, ge=1, le=1000)
    # New enquiry mails sent to the secretariat per hour, over all applicants (0 = no cap);
    # beyond it they wait in the queue, and the digest says how many wait.
    max_mails_per_hour: int = Field(default=0, ge=0, le=100000)
    # On confirm, e-mail the applicant an acknowledgement in their language: the reference,
    # their question, what happens next and how to follow up.
    acknowledge: bool = True

    @field_validator("reference_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z][A-Z0-9]{0,9}", value):
            raise ValueError(f"must be 1-10 capital letters or digits, like 'ECCP', got {value!r}")
        return value


class ReminderSettings(Section):
    first_after: PositiveDuration = timedelta(hours=48)
    repeat_every: PositiveDuration = timedelta(hours=24)
    max_count: int = Field(default=3, ge=0, le=100)
    # Reminders due in one round go out as one e-mail naming every reference (false: one
    # e-mail per enquiry, threaded under its original).
    grouped: bool = True


class DigestSettings(Section):
    cron: str = "0 9 * * mon-fri"
    timezone: TimeZoneName = "Europe/Rome"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(
                "must be a 5-field crontab expression (minute hour day month weekday), "
                f"like '0 9 * * mon-fri', got {value!r}"
            )
        # Imported here: settings must load without pulling in the scheduler.
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"is not a valid crontab expression ({exc}), got {value!r}") from None
        return value
