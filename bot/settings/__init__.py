"""Settings: a TOML file plus environment secrets -> frozen, validated Settings.

`Settings` (here) is the file's root; each section is its own module (telegram, mail,
enquiries, dialogue, privacy, web); load.py reads and validates the file;
run_problems.py says what `clusterbot run` refuses to start with.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from bot.settings.dialogue import FaqSettings, LimitSettings
from bot.settings.enquiries import DigestSettings, EnquirySettings, ReminderSettings
from bot.settings.mail import InboxSettings, SecretariatSettings, SmtpSettings
from bot.settings.privacy import PrivacySettings
from bot.settings.section import Language, Section, TimeZoneName
from bot.settings.telegram import TelegramSettings
from bot.settings.web import WEB_PATHS, WebSettings


class Settings(Section):
    language: Language = "it"
    timezone: TimeZoneName = "Europe/Rome"
    data_dir: Path = Path("var")
    knowledge_dir: Path | None = None
    telegram: TelegramSettings = TelegramSettings()
    smtp: SmtpSettings = SmtpSettings()
    secretariat: SecretariatSettings = SecretariatSettings()
    inbox: InboxSettings = InboxSettings()
    enquiries: EnquirySettings = EnquirySettings()
    limits: LimitSettings = LimitSettings()
    reminders: ReminderSettings = ReminderSettings()
    digest: DigestSettings = DigestSettings()
    faq: FaqSettings = FaqSettings()
    privacy: PrivacySettings = PrivacySettings()
    web: WebSettings = WebSettings()
    # Where the settings came from, for messages; not a key in the file.
    source: str = Field(default="defaults", exclude=True)

    @model_validator(mode="after")
    def _webhook_beside_web(self) -> Settings:
        # With [web] enabled the webhook is a route of the web chat's server: its path must
        # not be one of the chat's own.
        if self.web.enabled and self.telegram.webhook_url:
            from urllib.parse import urlsplit

            path = urlsplit(self.telegram.webhook_url).path or "/"
            if path in WEB_PATHS or path.startswith("/chat/"):
                raise ValueError(
                    "telegram.webhook_url: with [web] enabled the webhook shares the web "
                    f"chat's port, and its path {path!r} is one of the chat's own; give it a "
                    "path of its own, such as 'https://bot.example.org/telegram/<random>'"
                )
        return self

    @property
    def database_path(self) -> Path:
        """The SQLite file under data_dir."""
        return self.data_dir / "clusterbot.sqlite3"

    @property
    def mail_dir(self) -> Path:
        """Where the embedded mail store writes .eml files."""
        return self.data_dir / "mail"

    @property
    def resolved_knowledge_dir(self) -> Path:
        """The knowledge base folder: the configured one, else the packaged config/."""
        if self.knowledge_dir is not None:
            return self.knowledge_dir
        from bot.resources import config_dir

        return config_dir()
