"""[telegram]: the bot's token, the admin chat, webhook mode and the flood limits."""

from __future__ import annotations

import re

from pydantic import Field, ValidationInfo, field_validator

from bot.settings.section import Section

# What BotFather hands out: the bot's numeric id, a colon, then 30+ URL-safe characters.
_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{30,}$")
OFFICIAL_BOT_API = "https://api.telegram.org/"


class TelegramSettings(Section):
    token: str = ""
    base_url: str = "https://api.telegram.org/bot"
    admin_chat_id: int = 0
    admin_user_ids: tuple[int, ...] = ()
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = Field(default=8080, ge=1, le=65535)
    webhook_secret: str = ""
    # Telegram's flood limits; 0 = no limit (a local Bot API server, a paid allowance).
    max_messages_per_second: float = Field(default=30, ge=0)
    max_messages_per_chat_per_second: float = Field(default=1, ge=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _https_webhook(cls, value: str, info: ValidationInfo) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be empty (long polling) or an https:// URL, got {value!r}")
        # Telegram's servers only call https:// webhooks; a local Bot API server (base_url,
        # validated before this field, pointing elsewhere) also accepts http://.
        base_url = str(info.data.get("base_url", OFFICIAL_BOT_API))
        if value.startswith("http://") and base_url.startswith(OFFICIAL_BOT_API):
            raise ValueError(
                f"Telegram only calls https:// webhooks, got {value!r}; put a reverse proxy "
                "with a certificate in front (docs/operations.md, 'Webhook mode')"
            )
        return value

    @property
    def token_problem(self) -> str | None:
        """Why the token cannot be a BotFather token (never quoting it), or None."""
        token = self.token.strip()
        if not token:
            return (
                "telegram.token is empty: set TELEGRAM_BOT_TOKEN (or telegram.token) to the "
                "token @BotFather gave you"
            )
        if not _TOKEN.match(token):
            return (
                "telegram.token is not a bot token (expected digits, a colon, then 30 or "
                "more letters, digits, '_' or '-', as @BotFather gives it); check "
                "TELEGRAM_BOT_TOKEN / telegram.token"
            )
        return None

    @field_validator("webhook_secret")
    @classmethod
    def _secret_chars(cls, value: str) -> str:
        # Telegram accepts 1-256 characters A-Z, a-z, 0-9, _ and - in this header.
        if value and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value):
            raise ValueError("must be 1-256 characters from A-Z, a-z, 0-9, '_' and '-'")
        return value
