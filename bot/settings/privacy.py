"""[privacy]: retention and the privacy notice's controller, contact, DPO and authority."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator

from bot.settings.durations import PositiveDuration
from bot.settings.section import Section

# A privacy value starting with this (as in the example settings file) is not set yet.
PLACEHOLDER_MARK = "CHANGE ME"


def _privacy_line(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must be one line")
    if len(value) > 300:
        raise ValueError(f"must be at most 300 characters, got {len(value)}")
    return value.strip()


PrivacyLine = Annotated[str, AfterValidator(_privacy_line)]


class PrivacySettings(Section):
    retention: PositiveDuration = timedelta(days=365)
    # GDPR art. 13: who is responsible for the data and how to reach them, the data
    # protection officer (if any), and the authority applicants may complain to.
    controller: PrivacyLine = f"{PLACEHOLDER_MARK}: organisation name, street, city"
    contact: PrivacyLine = f"{PLACEHOLDER_MARK}: privacy contact e-mail or address"
    dpo: PrivacyLine = ""
    supervisory_authority: PrivacyLine = (
        "Garante per la protezione dei dati personali (www.garanteprivacy.it)"
    )

    def value(self, key: str) -> str:
        """A notice value, or '' while it is unset or still a placeholder."""
        value = str(getattr(self, key))
        return "" if value.upper().startswith(PLACEHOLDER_MARK) else value

    def placeholders(self) -> list[str]:
        """The keys the privacy notice needs that are still unset or placeholders."""
        required = ("controller", "contact")
        return [
            key
            for key in ("controller", "contact", "dpo", "supervisory_authority")
            if (key in required and not self.value(key))
            or str(getattr(self, key)).upper().startswith(PLACEHOLDER_MARK)
        ]
