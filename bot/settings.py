"""Settings: a TOML file plus environment secrets -> frozen, validated Settings."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

CONFIG_ENV = "CLUSTERBOT_CONFIG"

# Environment variables that win over the file: (env name, section, key).
SECRET_ENV: tuple[tuple[str, str, str], ...] = (
    ("TELEGRAM_BOT_TOKEN", "telegram", "token"),
    ("TELEGRAM_WEBHOOK_SECRET", "telegram", "webhook_secret"),
    ("SMTP_PASSWORD", "smtp", "password"),
    ("IMAP_PASSWORD", "inbox", "password"),
)

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HELP = "a duration such as '90s', '15m', '48h' or '2d'"
# Ten years: longer is a typo, and timedelta/scheduler arithmetic overflows far beyond it.
MAX_DURATION = timedelta(days=3650)

# `[smtp] host = "embedded"`: keep every mail as a local .eml file, on purpose.
EMBEDDED_SMTP = "embedded"
# Keys whose values are never printed, even in an error about their type.
SECRET_KEYS = frozenset(f"{section}.{key}" for _, section, key in SECRET_ENV)
# What BotFather hands out: the bot's numeric id, a colon, then 30+ URL-safe characters.
_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{30,}$")
OFFICIAL_BOT_API = "https://api.telegram.org/"


class SettingsError(Exception):
    """One or more settings are invalid; each line names the file, the key and the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_duration(value: object) -> timedelta:
    """Parse '90s', '15m', '48h' or '2d' into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            if seconds > MAX_DURATION.total_seconds():
                raise ValueError(
                    f"must be at most {format_duration(MAX_DURATION)} ({DURATION_HELP}), "
                    f"got {value!r}"
                )
            return timedelta(seconds=seconds)
    raise ValueError(f"must be {DURATION_HELP}, got {value!r}")


def format_duration(value: timedelta) -> str:
    """Render a timedelta back in the settings' own notation."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"must be an IANA time zone such as 'Europe/Rome' or 'Europe/Brussels', got {value!r}"
        ) from None
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"must be longer than 0s ({DURATION_HELP})")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
TimeZoneName = Annotated[str, BeforeValidator(_check_timezone)]
Language = Literal["it", "en"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class TelegramSettings(_Section):
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


class SmtpSettings(_Section):
    host: str = ""
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: str = ""
    sender: str = "Cluster call bot <noreply@example.org>"
    timeout: PositiveDuration = timedelta(seconds=30)

    @property
    def embedded(self) -> bool:
        """True when mail goes to the embedded local store (.eml files), not a server."""
        return self.host.strip() in ("", EMBEDDED_SMTP)

    @field_validator("sender")
    @classmethod
    def _sender_address(cls, value: str) -> str:
        from email.headerregistry import Address
        from email.utils import parseaddr

        if "\r" in value or "\n" in value:
            raise ValueError("must be one line")
        _, addr = parseaddr(value)
        try:
            Address(addr_spec=addr)
        except (ValueError, IndexError):
            raise ValueError(
                f"must be an address like 'Bot <noreply@example.org>', got {value!r}"
            ) from None
        if "@" not in addr:
            raise ValueError(f"must be an address like 'Bot <noreply@example.org>', got {value!r}")
        return value


_PLAIN_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")
_DOMAIN = re.compile(r"@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


class SecretariatSettings(_Section):
    email: str = "segreteria@example.org"
    language: Language = "it"
    # Who may answer enquiries by e-mail: addresses or '@domains' (secretariat.email always).
    answer_from: tuple[str, ...] = ()

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _PLAIN_ADDRESS.fullmatch(value):
            raise ValueError(f"must be one e-mail address like 'info@example.org', got {value!r}")
        return value

    @field_validator("answer_from")
    @classmethod
    def _answer_from(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = []
        for value in values:
            item = value.strip().lower()
            if not (_DOMAIN.fullmatch(item) or _PLAIN_ADDRESS.fullmatch(item)):
                raise ValueError(
                    "each entry must be an address like 'anna@example.org' or a domain like "
                    f"'@example.org', got {value!r}"
                )
            cleaned.append(item)
        return tuple(cleaned)


class InboxSettings(_Section):
    """The bot's own mailbox, where the secretariat's e-mail replies arrive (IMAP)."""

    host: str = ""
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = ""
    password: str = ""
    folder: str = "INBOX"
    reply_address: str = ""
    poll_every: PositiveDuration = timedelta(seconds=60)
    timeout: PositiveDuration = timedelta(seconds=30)

    @field_validator("reply_address")
    @classmethod
    def _reply_address(cls, value: str) -> str:
        value = value.strip()
        if value and (not _PLAIN_ADDRESS.fullmatch(value) or "+" in value.split("@")[0]):
            raise ValueError(
                "must be the bot's plain address like 'bot@example.org' (no '+': the bot adds "
                f"'+REF.token' itself), got {value!r}"
            )
        return value

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value or not value.isprintable() or '"' in value or "\\" in value:
            raise ValueError(f"must be a mailbox name such as 'INBOX', got {value!r}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> InboxSettings:
        if self.host:
            missing = [k for k in ("username", "reply_address") if not getattr(self, k)]
            if missing:
                raise ValueError(
                    f"with inbox.host set, inbox.{' and inbox.'.join(missing)} must be set too"
                )
        return self

    @property
    def configured(self) -> bool:
        """True when a real IMAP mailbox receives the replies."""
        return bool(self.host)


class EnquirySettings(_Section):
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


class LimitSettings(_Section):
    messages_per_minute: int = Field(default=20, ge=1, le=10000)


class ReminderSettings(_Section):
    first_after: PositiveDuration = timedelta(hours=48)
    repeat_every: PositiveDuration = timedelta(hours=24)
    max_count: int = Field(default=3, ge=0, le=100)
    # Reminders due in one round go out as one e-mail naming every reference (false: one
    # e-mail per enquiry, threaded under its original).
    grouped: bool = True


class DigestSettings(_Section):
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


class FaqSettings(_Section):
    min_score: float = Field(default=0.5, ge=0.0, le=1.0)


# A privacy value starting with this (as in the example settings file) is not set yet.
PLACEHOLDER_MARK = "CHANGE ME"


def _privacy_line(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must be one line")
    if len(value) > 300:
        raise ValueError(f"must be at most 300 characters, got {len(value)}")
    return value.strip()


PrivacyLine = Annotated[str, AfterValidator(_privacy_line)]


class PrivacySettings(_Section):
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


def _origin(value: str) -> str:
    match = re.fullmatch(r"(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?/?", value)
    if not match:
        raise ValueError(
            "must be an origin: scheme, host and optional port, no path, like "
            f"'https://www.example.org' or 'http://localhost:8000', got {value!r}"
        )
    return value.rstrip("/").lower()


# The web chat's own paths (bot/channels/web/server.py); a webhook beside it needs another.
WEB_PATHS = frozenset({"/", "/chat", "/widget.js", "/healthz"})


class WebSettings(_Section):
    enabled: bool = False
    listen: str = "127.0.0.1"
    # 0 picks a free port (tests); the address actually bound is printed at start.
    port: int = Field(default=8081, ge=0, le=65535)
    public_url: str = ""
    allowed_origins: tuple[str, ...] = ()
    # Flood guards, per minute (posts, new sessions) or at once (event streams). The
    # engine's own limit (limits.messages_per_minute) answers a fast typist politely;
    # these refuse floods before they reach the engine.
    posts_per_session: int = Field(default=40, ge=1, le=10_000)
    posts_per_address: int = Field(default=120, ge=1, le=100_000)
    new_sessions_per_address: int = Field(default=20, ge=1, le=100_000)
    streams_per_session: int = Field(default=4, ge=1, le=100)
    streams_per_address: int = Field(default=60, ge=1, le=100_000)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if not value.strip() or any(char.isspace() for char in value):
            raise ValueError(f"must be a host name or IP address like '127.0.0.1', got {value!r}")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError(
                "must be empty or the http(s) address the page is reached at, like "
                f"'https://chat.example.org', got {value!r}"
            )
        return value.rstrip("/")

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_origin(item) for item in value)

    @property
    def public_origin(self) -> str | None:
        """The origin (scheme://host[:port]) of public_url, if set."""
        if not self.public_url:
            return None
        scheme, _, rest = self.public_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}".lower()


class Settings(_Section):
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


def _describe_error(error: Mapping[str, Any]) -> str:
    loc = ".".join(str(part) for part in error["loc"] if not isinstance(part, int)) or "(top)"
    kind = error["type"]
    value: Any = error.get("input")
    if loc in SECRET_KEYS:
        # The value of a secret never reaches a terminal or a log, even when it is wrong.
        message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
        if kind == "string_type":
            message = "must be text in quotes"
        return f"{loc}: {message} (the value is not shown: it is a secret)"
    if kind == "extra_forbidden":
        return f"unknown key '{loc}': remove it or check its spelling against the example file"
    if kind == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"{loc}: must be one of {allowed}, got {value!r}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{loc}: must be a whole number, got {value!r}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        ctx = error.get("ctx", {})
        words = {"ge": "at least", "le": "at most", "gt": "more than", "lt": "less than"}
        bounds = " and ".join(f"{words.get(k, k)} {v}" for k, v in ctx.items())
        return f"{loc}: must be {bounds}, got {value!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "value_error":
        # A check across sections names its own keys.
        return message if loc == "(top)" else f"{loc}: {message}"
    return f"{loc}: {message} (got {value!r})"


def _without(data: Mapping[str, Any], loc: tuple[Any, ...]) -> dict[str, Any]:
    """A copy of data without the key at `loc` (a model-level error drops its section)."""
    copy = dict(data)
    if not loc:
        return copy
    head, rest = loc[0], loc[1:]
    if head not in copy:
        return copy
    if rest and isinstance(copy[head], Mapping) and not isinstance(rest[0], int):
        copy[head] = _without(copy[head], rest)
    else:
        del copy[head]
    return copy


def settings_with_problems(
    data: Mapping[str, Any], source: str = "defaults", base_dir: Path | None = None
) -> tuple[Settings, list[str]]:
    """Validate like settings_from_mapping, but never raise: every problem, plus Settings
    with the faulty keys left at their defaults, so `check` can go on to the rest."""
    problems: list[str] = []
    remaining = dict(data)
    for _ in range(50):
        try:
            return settings_from_mapping(remaining, source, base_dir), problems
        except _Invalid as exc:
            problems.extend(exc.problems)
            for loc in exc.locs:
                remaining = _without(remaining, loc)
    return Settings(source=source), problems


class _Invalid(SettingsError):
    def __init__(self, problems: list[str], locs: list[tuple[Any, ...]]) -> None:
        super().__init__(problems)
        self.locs = locs


def settings_from_mapping(
    data: Mapping[str, Any], source: str = "defaults", base_dir: Path | None = None
) -> Settings:
    """Validate a mapping (a parsed TOML file) into Settings, or raise SettingsError.

    With `base_dir` (the settings file's folder), a relative data_dir or knowledge_dir is
    read from there, so the bot finds its data whatever the working directory.
    """
    try:
        settings = Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = [f"{source}: {_describe_error(err)}" for err in exc.errors()]
        raise _Invalid(problems, [tuple(err["loc"]) for err in exc.errors()]) from None
    if base_dir is None:
        return settings
    anchored: dict[str, Path] = {}
    if not settings.data_dir.is_absolute():
        anchored["data_dir"] = base_dir / settings.data_dir
    if settings.knowledge_dir is not None and not settings.knowledge_dir.is_absolute():
        anchored["knowledge_dir"] = base_dir / settings.knowledge_dir
    return settings.model_copy(update=anchored) if anchored else settings


def run_problems(settings: Settings) -> list[str]:
    """What `clusterbot run` refuses to start with (and `check` reports), each naming the key."""
    telegram = settings.telegram
    problems: list[str] = []
    token_problem = telegram.token_problem
    if token_problem:
        problems.append(token_problem)
    if telegram.admin_chat_id > 0:
        # Positive ids are people's private chats: applicants' messages and the
        # secretariat's would share it, and nobody else of the team would see the posts.
        problems.append(
            f"telegram.admin_chat_id: {telegram.admin_chat_id} is a private chat (a positive "
            "id); use the secretariat's group chat, whose id is negative such as "
            "-1001234567890, or 0 for no admin chat"
        )
    if settings.smtp.host.strip() == "":
        problems.append(
            "smtp.host is empty: e-mails to the secretariat would only be saved as .eml files "
            f"under {settings.mail_dir} and never sent; set smtp.host to your mail server, "
            f'or host = "{EMBEDDED_SMTP}" under [smtp] to keep them there on purpose'
        )
    return problems


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    merged = dict(data)
    for env_name, section, key in SECRET_ENV:
        value = environ.get(env_name)
        if value:
            current = merged.get(section)
            block = dict(current) if isinstance(current, dict) else {}
            block[key] = value
            merged[section] = block
    return merged


def _read_settings_file(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> tuple[dict[str, Any], str, Path | None]:
    """The parsed file (with environment secrets applied), its name, and its folder."""
    chosen = path if path is not None else environ.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    source = "defaults"
    base_dir: Path | None = None
    if chosen is not None:
        file = Path(chosen)
        source = str(file)
        # Not resolve(): a symlinked config keeps its data beside the link, as written.
        base_dir = Path(os.path.abspath(file)).parent
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SettingsError(
                [
                    f"{file}: settings file not found; check --config or ${CONFIG_ENV}, "
                    "or copy config/clusterbot.example.toml"
                ]
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError([f"{file}: cannot read settings file ({exc})"]) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"{file}: not valid TOML: {exc}"]) from None
    return _apply_environment(data, environ), source, base_dir


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load settings from --config, else $CLUSTERBOT_CONFIG, else defaults; env secrets win."""
    data, source, base_dir = _read_settings_file(path, os.environ if environ is None else environ)
    return settings_from_mapping(data, source, base_dir)


def load_settings_with_problems(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Settings, list[str]]:
    """Like load_settings, but returns every problem with best-effort Settings (for check).

    A settings file that is missing, unreadable or not TOML still raises SettingsError:
    nothing else is worth checking (defaults would describe another bot).
    """
    data, source, base_dir = _read_settings_file(path, os.environ if environ is None else environ)
    return settings_with_problems(data, source, base_dir)
