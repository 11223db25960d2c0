"""Shared fixtures: a database and a RabbitMQ vhost of this test run's own, on the real services.

The environment variables are set for the whole session, so processes the tests start (workers,
the ingress) use the same isolated database and vhost, log in as the application role, and run in
development mode (its published secrets and token key).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis
from sqlalchemy.engine import Engine

from config import Settings, get_settings
from db import admin
from db.engine import create_db_engine
from devkit.services import rabbitmq_vhost
from tests.support.urls import BASE_RABBITMQ_URL, SYSTEM_ROLE, admin_url_for, database_url_for

os.environ["APP_ENV"] = "development"


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    """Settings pointing at a fresh, migrated database and a fresh vhost; dropped afterwards."""
    name = f"adsapp_test_{uuid.uuid4().hex[:10]}"
    urls = {
        "DATABASE_URL": database_url_for(name),
        "DATABASE_ADMIN_URL": admin_url_for(name),
        "DATABASE_SYSTEM_URL": database_url_for(name, SYSTEM_ROLE),
    }
    with rabbitmq_vhost(BASE_RABBITMQ_URL) as amqp_url:
        saved = {k: os.environ.get(k) for k in (*urls, "RABBITMQ_URL")}
        os.environ.update(urls)
        os.environ["RABBITMQ_URL"] = amqp_url
        get_settings.cache_clear()
        current = get_settings()
        admin.upgrade(current)
        try:
            yield current
        finally:
            admin.drop_database(current)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    """Connections acting as the application role: row-level security applies."""
    eng = create_db_engine(settings, pool_size=4)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def owner_engine(settings: Settings) -> Iterator[Engine]:
    """Connections as DATABASE_ADMIN_URL's user (the table owner), for catalog checks only."""
    eng = create_db_engine(settings, pool_size=2, as_app_role=False)
    yield eng
    eng.dispose()


@pytest.fixture
def redis_client() -> Iterator[Redis]:
    """The real Redis at REDIS_URL."""
    client = Redis.from_url(get_settings().redis_url)
    yield client
    client.close()


@pytest.fixture
def namespace(redis_client: Redis) -> Iterator[str]:
    """A key prefix no other test (or concurrent run) uses; its keys are deleted afterwards."""
    prefix = f"adsapp-test:{uuid.uuid4().hex}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        redis_client.delete(*keys)
