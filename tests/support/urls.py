"""Database URLs of the test run."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from config.settings import url_with_user


def url_through(url: str, host_port: str) -> str:
    """`url` with its host and port replaced by `host_port` (a pooler in front of that server)."""
    parts = urlsplit(url)
    credentials, at, _ = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{credentials}{at}{host_port}").geturl()


APP_ROLE = "adsapp_app"
SYSTEM_ROLE = "adsapp_system"
# The owner's login: DATABASE_ADMIN_URL, else DATABASE_URL as the `postgres` superuser.
BASE_ADMIN_URL = os.environ.get("DATABASE_ADMIN_URL") or url_with_user(
    os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/adsapp"),
    "postgres",
    keep_password=False,
)
BASE_RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
# host:port of a pooler in front of that Postgres (`make test-pgbouncer`): the runtime's logins go
# through it, the owner's (migrations, CREATE DATABASE) straight to Postgres.
POOLER = os.environ.get("ADSAPP_TEST_POOLER")


def admin_url_for(name: str) -> str:
    base, _, _ = BASE_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def database_url_for(name: str, role: str = APP_ROLE) -> str:
    """The URL of database `name` as `role` (the application role unless told), through the
    pooler when there is one."""
    url = url_with_user(admin_url_for(name), role, keep_password=False)
    return url_through(url, POOLER) if POOLER else url
