"""Database administration: create the database if missing, migrate up or down.

All of it runs as DATABASE_ADMIN_URL's user (the tables' owner, who may create roles); the
runtime's roles are created by the migrations and given the passwords their URLs carry.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from config import Settings
from config.errors import DependencyUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = _admin_url(settings).render_as_string(hide_password=False)
    cfg.attributes["app_role"] = settings.database_app_role
    cfg.attributes["system_role"] = settings.database_system_role
    return cfg


def _admin_url(settings: Settings) -> URL:
    # The owner's login, on DATABASE_URL's database: the one the runtime uses is the one migrated.
    return make_url(settings.admin_sqlalchemy_url).set(database=make_url(settings.sqlalchemy_url).database)


def _libpq_dsn(settings: Settings, database: str) -> str:
    url = _admin_url(settings).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def set_role_passwords(settings: Settings) -> None:
    """Give the application and maintenance roles the passwords DATABASE_URL and
    DATABASE_SYSTEM_URL carry (none given: left as they are, e.g. for trust or peer logins)."""
    wanted = [
        (make_url(settings.sqlalchemy_url), settings.database_app_role),
        (make_url(settings.system_sqlalchemy_url), settings.database_system_role),
    ]
    with psycopg.connect(
        _libpq_dsn(settings, make_url(settings.sqlalchemy_url).database or "postgres"), autocommit=True
    ) as conn:
        for url, role in wanted:
            if url.password:
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(str(url.password))
                    )
                )


def ensure_database(settings: Settings) -> bool:
    """Create DATABASE_URL's database when it does not exist. Returns whether it was created."""
    name = make_url(settings.sqlalchemy_url).database
    if not name:
        raise ValueError("DATABASE_URL names no database")
    try:
        conn = psycopg.connect(_libpq_dsn(settings, "postgres"), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise DependencyUnavailable(
            "PostgreSQL",
            "DATABASE_ADMIN_URL" if settings.database_admin_url else "DATABASE_URL",
            make_url(settings.admin_sqlalchemy_url).render_as_string(),
            exc,
        ) from exc
    with conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def drop_database(settings: Settings) -> None:
    name = make_url(settings.sqlalchemy_url).database
    if not name:
        raise ValueError("DATABASE_URL names no database")
    with psycopg.connect(_libpq_dsn(settings, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def upgrade(settings: Settings, revision: str = "head") -> None:
    ensure_database(settings)
    command.upgrade(alembic_config(settings), revision)
    set_role_passwords(settings)


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)
