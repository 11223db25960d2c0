"""One typed settings object for every process, read once at start.

Names follow the contract in DESIGN.md; `.env` in the working directory is read too.
Secrets are `SecretStr` so they never show up in a repr, a log line or a traceback.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_secrets(value: object) -> object:
    if isinstance(value, str):
        return [SecretStr(part.strip()) for part in value.split(",") if part.strip()]
    return value


def _require_scheme(name: str, url: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(
            f"{name} must be a URL like {schemes[0]}://host:port/..., got scheme "
            f"{parts.scheme!r} and host {parts.hostname!r}"
        )
    return url


SecretList = Annotated[list[SecretStr], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/adsapp"
    # The role the runtime acts as. It owns no table, so row-level security applies to it even when
    # DATABASE_URL names a superuser (the usual case on a developer machine).
    database_app_role: str = "adsapp_app"
    database_pool_size: int = Field(default=8, ge=1)
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    redis_url: str = "redis://127.0.0.1:6379/0"

    whatsapp_app_secret: SecretList = Field(default_factory=lambda: [SecretStr("dev-app-secret")])
    whatsapp_verify_token: SecretStr = SecretStr("dev-verify-token")
    stripe_webhook_secret: SecretList = Field(default_factory=lambda: [SecretStr("whsec_dev")])
    stripe_api_key: SecretStr | None = None

    graph_api_url: str = "http://127.0.0.1:8900"
    graph_api_version: str = "v21.0"

    port: int = 8000
    fake_graph_port: int = 8900
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    media_dir: str = "var/media"
    log_level: str = "INFO"
    # Ingress: how long a webhook may wait for RabbitMQ's publisher confirm before it answers 503.
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    # Ingress: pause between reconnect attempts after the broker connection drops.
    rabbitmq_reconnect_interval_seconds: float = Field(default=1.0, gt=0)
    # Ingress: per-dependency budget of /readyz.
    readiness_timeout_seconds: float = Field(default=1.0, gt=0)
    # Ingress: deepest JSON nesting accepted in a webhook body (Meta and Stripe stay under 15).
    max_json_depth: int = Field(default=128, ge=16, le=1000)
    # Dead letters: the scheduled sweep of transient ones (first after this many seconds, each next
    # `factor` times later, at most `max` sweeps per chain), retention of retried/discarded ones, and
    # how long an outage of Postgres/RabbitMQ/Redis may hold a job before it spends its retries.
    dead_letter_sweep_first_seconds: float = Field(default=300.0, gt=0)
    dead_letter_sweep_factor: float = Field(default=3.0, ge=1)
    dead_letter_sweep_max: int = Field(default=5, ge=0)
    dead_letter_retention_days: float = Field(default=30.0, gt=0)
    dead_letter_outage_hold_seconds: float = Field(default=4 * 3600.0, ge=0)
    # Console: the key signing its session cookies (unset: a random one per process, so sessions end
    # with the process and several web processes do not share them; set it in production).
    console_secret: SecretStr | None = None
    # Console: how long a sign-in lasts.
    console_session_seconds: int = Field(default=8 * 3600, ge=60)
    # Console: mark its cookies Secure (set when it is served over HTTPS, as behind a balancer).
    console_secure_cookies: bool = False

    @field_validator("whatsapp_app_secret", "stripe_webhook_secret", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_secrets(value)

    @field_validator("whatsapp_app_secret", "stripe_webhook_secret")
    @classmethod
    def _not_empty(cls, value: list[SecretStr]) -> list[SecretStr]:
        if not value:
            raise ValueError("at least one secret is required")
        return value

    @field_validator("database_app_role")
    @classmethod
    def _role_identifier(cls, value: str) -> str:
        # It is spliced into DDL (roles cannot be bound parameters), so only plain identifiers.
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError("DATABASE_APP_ROLE must be a lower-case SQL identifier")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return _require_scheme("DATABASE_URL", value, ("postgresql+psycopg", "postgresql"))

    @field_validator("rabbitmq_url")
    @classmethod
    def _rabbitmq_url(cls, value: str) -> str:
        return _require_scheme("RABBITMQ_URL", value, ("amqp", "amqps"))

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return _require_scheme("REDIS_URL", value, ("redis", "rediss", "unix"))

    @field_validator("graph_api_url")
    @classmethod
    def _graph_api_url(cls, value: str) -> str:
        return _require_scheme("GRAPH_API_URL", value, ("http", "https")).rstrip("/")

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        # URLs can carry passwords; SecretStr fields already mask themselves.
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name is not None and name.endswith("_url") else value)

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL with the psycopg 3 driver named, whichever form was given."""
        if self.database_url.startswith("postgresql://"):
            return "postgresql+psycopg://" + self.database_url.removeprefix("postgresql://")
        return self.database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use and then kept."""
    return Settings()


def mask_url(url: str) -> str:
    """The URL with any password replaced, for logs and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
