"""Database administration: create the database if missing, migrate up or down."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy.engine import make_url

from config import Settings
from config.errors import DependencyUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = settings.sqlalchemy_url
    cfg.attributes["app_role"] = settings.database_app_role
    return cfg


def _libpq_dsn(settings: Settings, database: str) -> str:
    url = make_url(settings.sqlalchemy_url).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def ensure_database(settings: Settings) -> bool:
    """Create DATABASE_URL's database when it does not exist. Returns whether it was created."""
    name = make_url(settings.sqlalchemy_url).database
    if not name:
        raise ValueError("DATABASE_URL names no database")
    try:
        conn = psycopg.connect(_libpq_dsn(settings, "postgres"), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise DependencyUnavailable(
            "PostgreSQL", "DATABASE_URL", make_url(settings.sqlalchemy_url).render_as_string(), exc
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


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)
