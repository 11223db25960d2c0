from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from config import Settings
from db import admin
from db.tables import metadata
from tests.support.urls import database_url_for

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch(settings: Settings) -> Iterator[Settings]:
    scratch = settings.model_copy(
        update={"database_url": database_url_for(f"adsapp_mig_{uuid.uuid4().hex[:8]}")}
    )
    yield scratch
    admin.drop_database(scratch)


def _tables(settings: Settings) -> set[str]:
    engine = sa.create_engine(settings.sqlalchemy_url, poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_creates_the_database_and_down_and_up_again_work(scratch: Settings) -> None:
    assert admin.ensure_database(scratch) is True
    assert admin.ensure_database(scratch) is False
    admin.upgrade(scratch)
    assert _tables(scratch) == set(metadata.tables)
    admin.downgrade(scratch, "base")
    assert _tables(scratch) == set()
    admin.upgrade(scratch)
    assert _tables(scratch) == set(metadata.tables)


def test_migrations_match_the_table_definitions(settings: Settings) -> None:
    engine = sa.create_engine(settings.sqlalchemy_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert diff == []
