"""The process's SQLAlchemy engine, made at boot.

Every pooled connection switches to the application role as soon as it opens: that role owns no
table, so row-level security applies even when DATABASE_URL names a superuser.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Engine, make_url

from config import Settings
from config.errors import DependencyUnavailable


def create_db_engine(
    settings: Settings, *, pool_size: int | None = None, as_app_role: bool = True, pre_ping: bool = True
) -> Engine:
    """`pre_ping=False` for workers: a dead pooled connection then fails its message, which is
    retried on a fresh one, instead of every unit of work paying a round trip to check."""
    engine = sa.create_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=4,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5, "application_name": "adsapp"},
    )
    if as_app_role:
        role = settings.database_app_role

        @sa.event.listens_for(engine, "connect")
        def _act_as_app_role(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            dbapi_connection.commit()

    return engine


def check_database(engine: Engine) -> None:
    """Raise a DependencyUnavailable naming Postgres and DATABASE_URL when it cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        url = make_url(str(engine.url)).render_as_string(hide_password=True)
        raise DependencyUnavailable("PostgreSQL", "DATABASE_URL", url, exc.orig or exc) from exc
