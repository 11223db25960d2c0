"""One typed settings object for every process, read once at start.

Names follow the contract in DESIGN.md; `.env` in the working directory is read too.
Secrets are `SecretStr` so they never show up in a repr, a log line or a traceback.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.errors import ConfigurationError

DEVELOPMENT = "development"
# Published development values: accepted only under APP_ENV=development (see `_refuse_dev_secrets`).
DEV_APP_SECRET = "dev-app-secret"  # noqa: S105
DEV_VERIFY_TOKEN = "dev-verify-token"  # noqa: S105
DEV_STRIPE_SECRET = "whsec_dev"  # noqa: S105
DEV_CONSOLE_SECRET = "dev-console-secret"  # noqa: S105
DEV_TOKEN_KEY = "yQNWUuBgTU141G-3UHollExNiPCiY5_wwlHzJ-ZVVo8="  # noqa: S105
DEV_ADMIN_USER = "postgres"
DEV_SYSTEM_USER = "adsapp_system"


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


def _role_of(name: str, url: str) -> str:
    # Role names are spliced into DDL (roles cannot be bound parameters), so only plain identifiers.
    user = urlsplit(url).username or ""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", user):
        raise ValueError(f"{name} must name its role as a lower-case SQL identifier, got {user!r}")
    return user


def url_with_user(url: str, user: str, *, keep_password: bool) -> str:
    """`url` logging in as `user` (with its password when `keep_password`)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    password = parts.password if keep_password else None
    credentials = f"{user}:{password}" if password else user
    return parts._replace(netloc=f"{credentials}@{host}").geturl()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # Anything but "development" refuses to start with a missing or published development secret.
    app_env: str = "production"
    # The runtime logs in as the application role this URL names: it owns no table and cannot lift
    # row-level security. Only `adsapp db upgrade|downgrade` uses DATABASE_ADMIN_URL (the owner),
    # and only system units of work (sweeps, maintenance) use DATABASE_SYSTEM_URL.
    database_url: str = "postgresql+psycopg://adsapp_app@127.0.0.1:5432/adsapp"
    database_admin_url: str | None = None
    database_system_url: SecretStr | None = None
    database_pool_size: int = Field(default=8, ge=1)
    # How many runs of one statement on a connection before the driver prepares it server-side;
    # empty or "none" never prepares (what a pooler in transaction mode in front of Postgres needs).
    database_prepare_threshold: int | None = Field(default=5, ge=0)
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    redis_url: str = "redis://127.0.0.1:6379/0"

    whatsapp_app_secret: SecretList = Field(default_factory=lambda: [SecretStr(DEV_APP_SECRET)])
    whatsapp_verify_token: SecretStr = SecretStr(DEV_VERIFY_TOKEN)
    stripe_webhook_secret: SecretList = Field(default_factory=lambda: [SecretStr(DEV_STRIPE_SECRET)])
    # Fernet keys for Graph access tokens at rest: the first encrypts, every one decrypts (rotation).
    token_encryption_keys: SecretList = Field(default_factory=list)
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
    # Inbound: how long a parked webhook change (for a number nobody owns yet, or unreadable) is kept.
    parked_changes_retention_days: float = Field(default=7.0, gt=0)
    # Dead letters: the scheduled sweep of transient ones (first after this many seconds, each next
    # `factor` times later, at most `max` sweeps per chain), retention of retried/discarded ones, and
    # how long an outage of Postgres/RabbitMQ/Redis may hold a job before it spends its retries.
    dead_letter_sweep_first_seconds: float = Field(default=300.0, gt=0)
    dead_letter_sweep_factor: float = Field(default=3.0, ge=1)
    dead_letter_sweep_max: int = Field(default=5, ge=0)
    dead_letter_retention_days: float = Field(default=30.0, gt=0)
    dead_letter_outage_hold_seconds: float = Field(default=4 * 3600.0, ge=0)
    # Console: the key signing its session cookies, the same in every web process (each must accept
    # the others' cookies); required outside development, like the webhook secrets.
    console_secret: SecretStr = SecretStr(DEV_CONSOLE_SECRET)
    # Console: how long a sign-in lasts.
    console_session_seconds: int = Field(default=8 * 3600, ge=60)
    # Console: mark its cookies Secure (set when it is served over HTTPS, as behind a balancer).
    console_secure_cookies: bool = False
    # Where every process writes its fleet-wide counts (queue traffic, webhook answers, pacing
    # deferrals) and the console reads them: a Redis key prefix, one per deployment.
    fleet_counters_namespace: str = "adsapp:counts"
    # Console: failed API-key sign-ins allowed per client address per window; past it, 429.
    console_sign_in_limit: int = Field(default=10, ge=1)
    console_sign_in_window_seconds: float = Field(default=300.0, gt=0)

    # Observability. Metrics are served on internal ports, one per process group, never on $PORT.
    metrics_host: str = "127.0.0.1"
    ingress_metrics_port: int = Field(default=9190, ge=1, le=65535)
    scheduler_metrics_port: int = Field(default=9196, ge=1, le=65535)
    # Parent of each group's prometheus_client multiprocess directory (wiped at each start).
    metrics_dir: str = "var/prometheus"
    # uvicorn worker processes of the ingress (`python -m ingress.run`).
    web_concurrency: int = Field(default=1, ge=1, le=64)
    # Optional (http://user:password@host:15672): unacked counts per queue need RabbitMQ's statistics
    # (the console then shows the broker's own rates in and out; without it, the fleet's counts).
    rabbitmq_management_url: str | None = None
    # How often the scheduler refreshes the fleet gauges (queue depths, outbox, breakers).
    fleet_gauges_interval_seconds: float = Field(default=10.0, gt=0)
    # Tracing is on only when an OTLP endpoint is set (http://collector:4318); off, it costs nothing.
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str | None = None

    @field_validator("whatsapp_app_secret", "stripe_webhook_secret", "token_encryption_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_secrets(value)

    @field_validator("whatsapp_app_secret", "stripe_webhook_secret")
    @classmethod
    def _not_empty(cls, value: list[SecretStr]) -> list[SecretStr]:
        if not value:
            raise ValueError("at least one secret is required")
        return value

    @field_validator("token_encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for key in value:
            try:
                raw = base64.urlsafe_b64decode(key.get_secret_value().encode())
            except (ValueError, binascii.Error):
                raw = b""
            if len(raw) != 32:
                raise ValueError(
                    "TOKEN_ENCRYPTION_KEYS must be Fernet keys: 32 url-safe base64-encoded bytes each "
                    "(Fernet.generate_key() of the cryptography package makes one)"
                )
        return value

    @field_validator("app_env")
    @classmethod
    def _app_env(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("database_prepare_threshold", mode="before")
    @classmethod
    def _database_prepare_threshold(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        _require_scheme("DATABASE_URL", value, ("postgresql+psycopg", "postgresql"))
        _role_of("DATABASE_URL", value)
        return value

    @field_validator("database_admin_url")
    @classmethod
    def _database_admin_url(cls, value: str | None) -> str | None:
        if value is not None:
            _require_scheme("DATABASE_ADMIN_URL", value, ("postgresql+psycopg", "postgresql"))
        return value

    @field_validator("database_system_url")
    @classmethod
    def _database_system_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            url = value.get_secret_value()
            _require_scheme("DATABASE_SYSTEM_URL", url, ("postgresql+psycopg", "postgresql"))
            _role_of("DATABASE_SYSTEM_URL", url)
        return value

    @model_validator(mode="after")
    def _refuse_dev_secrets(self) -> Settings:
        """Outside development, a secret left at its published development value (or unset) is a
        webhook anyone can forge or a token anyone can decrypt: refuse to start, naming it."""
        if self.is_development:
            return self
        problems = [
            name
            for name, dev_value, values in (
                ("WHATSAPP_APP_SECRET", DEV_APP_SECRET, self.whatsapp_app_secret),
                ("WHATSAPP_VERIFY_TOKEN", DEV_VERIFY_TOKEN, [self.whatsapp_verify_token]),
                ("STRIPE_WEBHOOK_SECRET", DEV_STRIPE_SECRET, self.stripe_webhook_secret),
                ("TOKEN_ENCRYPTION_KEYS", DEV_TOKEN_KEY, self.token_encryption_keys),
                ("CONSOLE_SECRET", DEV_CONSOLE_SECRET, [self.console_secret]),
            )
            if not values or any(v.get_secret_value() == dev_value for v in values)
        ]
        if self.database_system_url is None:
            problems.append("DATABASE_SYSTEM_URL")
        if problems:
            raise ValueError(
                f"APP_ENV={self.app_env!r} (not development) needs {', '.join(problems)} set to "
                "values of your own (missing, or the published development value); "
                "set APP_ENV=development for a development machine"
            )
        return self

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
            masked = isinstance(value, str) and name is not None and name.endswith("_url")
            yield name, (mask_url(value) if masked else value)

    @property
    def is_development(self) -> bool:
        return self.app_env == DEVELOPMENT

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL with the psycopg 3 driver named, whichever form was given."""
        return _psycopg(self.database_url)

    @property
    def database_app_role(self) -> str:
        """The application role: DATABASE_URL's user."""
        return _role_of("DATABASE_URL", self.database_url)

    @property
    def admin_sqlalchemy_url(self) -> str:
        """DATABASE_ADMIN_URL (the tables' owner, who may create roles); in development it defaults
        to DATABASE_URL as the `postgres` superuser."""
        if self.database_admin_url is not None:
            return _psycopg(self.database_admin_url)
        if not self.is_development:
            raise ConfigurationError(
                "DATABASE_ADMIN_URL is required outside development (the owner that migrates)"
            )
        return _psycopg(url_with_user(self.database_url, DEV_ADMIN_USER, keep_password=False))

    @property
    def system_sqlalchemy_url(self) -> str:
        """DATABASE_SYSTEM_URL (the maintenance role of system units of work); in development it
        defaults to DATABASE_URL as `adsapp_system`."""
        if self.database_system_url is not None:
            return _psycopg(self.database_system_url.get_secret_value())
        if not self.is_development:
            raise ConfigurationError("DATABASE_SYSTEM_URL is required outside development")
        return _psycopg(url_with_user(self.database_url, DEV_SYSTEM_USER, keep_password=True))

    @property
    def database_system_role(self) -> str:
        return _role_of("DATABASE_SYSTEM_URL", self.system_sqlalchemy_url)

    @property
    def token_keys(self) -> list[str]:
        """The Fernet keys, first one encrypting; the development key only in development."""
        keys = [k.get_secret_value() for k in self.token_encryption_keys]
        if not keys and self.is_development:
            return [DEV_TOKEN_KEY]
        return keys


def _psycopg(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


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
