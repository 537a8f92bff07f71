"""The gateway's settings: one class, read from the environment (and `.env` in development)."""

from __future__ import annotations

from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.sandbox_credentials import SandboxCredentials, load_or_create
from gateway.smtp_url import parse_smtp_url

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

SANDBOX_PATH = "/sandbox"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


def normalize_database_url(url: str) -> str:
    """Map Heroku-style and sync URLs onto the async drivers the gateway uses."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("must look like postgresql://user@host/db or sqlite:///path")
    scheme = scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return f"sqlite+aiosqlite://{rest}"
    raise ValueError(f"unsupported scheme {scheme!r} (use postgresql:// or sqlite:///)")


class Settings(BaseSettings):
    """Every setting of the gateway; environment variable names are the field names upper-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    database_url: str | None = Field(
        default=None, description="PostgreSQL or SQLite URL; default: SQLite file in DATA_DIR"
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL; default: an embedded Redis on a unix socket"
    )
    port: int = Field(default=8000, ge=1, le=65535)
    public_base_url: str | None = Field(
        default=None,
        description="URL Twilio and customers reach us at; default http://127.0.0.1:PORT",
    )
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_api_url: str | None = Field(
        default=None,
        description="send Twilio REST calls here instead of api.twilio.com (a sandbox elsewhere)",
    )
    sms_rate_limits: bool = Field(
        default=True, description="space sends per sender number (off only for benchmarks)"
    )
    inline_jobs: int = Field(
        default=16,
        ge=0,
        le=1000,
        description="jobs a lead waits on (a play's first step, its text, a reply) that a "
        "process runs itself right after the commit that made them due, at most this many at "
        "once; beyond that `gateway web` hands them through Redis to a worker, while `gateway "
        "run` and `gateway worker` keep up to 256 more waiting their turn; with 0 they all go "
        "through Redis",
    )
    clock_ahead_seconds: float = Field(
        default=0,
        ge=0,
        le=7 * 24 * 3600,
        description="development with a sandbox on this machine only (refused otherwise): run "
        "the gateway's clock this far ahead, so a benchmark's texts fall inside quiet hours' "
        "window at any hour",
    )
    environment: Literal["development", "production"] = Field(
        default="development", description="production: webhook URLs must use https"
    )
    smtp_url: str | None = Field(
        default=None,
        description="smtp://user:pass@host:587?starttls=true or smtps://...; "
        "unset: emails are captured (stored, shown by GET /v1/emails), not sent",
    )
    email_from: str = Field(
        default="no-reply@localhost",
        description="sender of email steps whose step and playbook name none",
    )
    data_dir: Path = Path(".data")
    log_level: LogLevel = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return normalize_database_url(value) if value else None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("public_base_url", "twilio_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://gw.example.com")
        return value.rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value:
            parse_smtp_url(value)  # ValueError: one line saying what is wrong
        return value or None

    @field_validator("email_from")
    @classmethod
    def _email_from(cls, value: str) -> str:
        if "@" not in parseaddr(value)[1]:
            raise ValueError("must be an email address such as 'Acme <quotes@acme.com>'")
        return value

    @field_validator("twilio_account_sid")
    @classmethod
    def _account_sid(cls, value: str | None) -> str | None:
        if value and not (value.startswith("AC") and len(value) == 34):
            raise ValueError("must be a Twilio Account SID: AC followed by 32 hex characters")
        return value or None

    @model_validator(mode="after")
    def _twilio_pair(self) -> Settings:
        if bool(self.twilio_account_sid) != bool(self.twilio_auth_token):
            missing = "TWILIO_AUTH_TOKEN" if self.twilio_account_sid else "TWILIO_ACCOUNT_SID"
            raise ValueError(f"{missing} must be set together with the other Twilio credential")
        if self.environment == "production" and not self.twilio_account_sid:
            # The built-in sandbox would answer in Twilio's place: nothing would reach a lead.
            raise ValueError(
                "ENVIRONMENT=production requires TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN "
                "(the built-in Twilio sandbox is for development only)"
            )
        if self.clock_ahead_seconds and not self.sandbox_here:
            # The quiet-hours gate reads this clock: set ahead, it would text a real phone at
            # night. Only a sandbox on this machine, in development, may receive what it lets go.
            raise ValueError(
                "CLOCK_AHEAD_SECONDS is for development against a sandbox on this machine "
                "(no TWILIO_ACCOUNT_SID, or a TWILIO_API_URL on 127.0.0.1, localhost or ::1)"
            )
        return self

    @property
    def sandbox_here(self) -> bool:
        """True in development when a sandbox on this machine stands in for Twilio: the
        built-in one, or another at a loopback TWILIO_API_URL."""
        if self.environment == "production":
            return False
        if self.twilio_api_url is None:
            return self.uses_sandbox
        return urlsplit(self.twilio_api_url).hostname in LOOPBACK_HOSTS

    @cached_property
    def database(self) -> str:
        """The async database URL in force."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'gateway.db').resolve()}"

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def base_url(self) -> str:
        return self.public_base_url or f"http://127.0.0.1:{self.port}"

    @property
    def uses_sandbox(self) -> bool:
        """True when no Twilio credentials are configured: the built-in sandbox stands in."""
        return not self.twilio_account_sid

    @cached_property
    def sandbox_credentials(self) -> SandboxCredentials:
        """The built-in sandbox's credentials: random per DATA_DIR, stored there (0600)."""
        return load_or_create(self.data_dir)

    @property
    def twilio_sid(self) -> str:
        return self.twilio_account_sid or self.sandbox_credentials.account_sid

    @property
    def twilio_token(self) -> str:
        """The token Twilio (or the sandbox) signs webhooks with and we authenticate with."""
        return self.twilio_auth_token or self.sandbox_credentials.auth_token

    @property
    def twilio_api_base_url(self) -> str | None:
        """Where the twilio library's requests go: None for Twilio, the sandbox otherwise."""
        if self.twilio_api_url:
            return self.twilio_api_url.rstrip("/")
        return None if not self.uses_sandbox else self.base_url + SANDBOX_PATH


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's report into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "_".join(str(p) for p in first["loc"]).upper()
        message = str(first["msg"]).removeprefix("Value error, ")
        where = f"{name}: " if name else ""
        raise SettingsError(f"configuration error: {where}{message}") from None
