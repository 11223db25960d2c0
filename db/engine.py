"""The process's SQLAlchemy engines, made at boot.

The runtime logs in as the application role (DATABASE_URL): it owns no table, has no BYPASSRLS
and is a member of no other role, so neither `SET app.system` nor `RESET ROLE` nor `SET ROLE` can
lift row-level security from inside a session. A connection that turns out to be a superuser or
BYPASSRLS login is refused rather than silently ignoring every policy.

System units of work (`UnitOfWork(engine, system=True)`: the scheduler's sweeps, maintenance) run
on a companion engine of the maintenance role (DATABASE_SYSTEM_URL), made on first use: only that
role's sessions can open the system scope.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from config import Settings
from config.errors import ConfigurationError, DependencyUnavailable

_SYSTEM_POOL_SIZE = 2
_system_urls: weakref.WeakKeyDictionary[Engine, tuple[str, int | None]] = weakref.WeakKeyDictionary()
_system_engines: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()

_system_lock = threading.Lock()

_PRIVILEGED = "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = session_user"


def _engine(url: str, pool_size: int, pre_ping: bool, prepare_threshold: int | None) -> Engine:
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=4,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        # psycopg prepares a statement server-side (its own cache, per connection) once it has run
        # `prepare_threshold` times on that connection; None never does, for a transaction-mode
        # pooler, where the next transaction may run on a server session that never saw it.
        connect_args={
            "connect_timeout": 5,
            "application_name": "adsapp",
            "prepare_threshold": prepare_threshold,
        },
    )


def _refuse_privileged_logins(engine: Engine, variable: str) -> None:
    @sa.event.listens_for(engine, "connect")
    def _check(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(_PRIVILEGED)
            row = cursor.fetchone()
        dbapi_connection.rollback()
        if row is None or row[0]:
            dbapi_connection.close()
            raise ConfigurationError(
                f"{variable} must log in as a plain role (not a superuser, not BYPASSRLS): "
                "row-level security would not apply"
            )


def create_db_engine(
    settings: Settings, *, pool_size: int | None = None, as_app_role: bool = True, pre_ping: bool = True
) -> Engine:
    """The application role's engine; `as_app_role=False` gives the owner's (DATABASE_ADMIN_URL),
    for migrations and catalog checks only.

    `pre_ping=False` for workers: a dead pooled connection then fails its message, which is
    retried on a fresh one, instead of every unit of work paying a round trip to check."""
    size = pool_size or settings.database_pool_size
    if not as_app_role:
        return _engine(settings.admin_sqlalchemy_url, size, pre_ping, settings.database_prepare_threshold)
    engine = _engine(settings.sqlalchemy_url, size, pre_ping, settings.database_prepare_threshold)
    _refuse_privileged_logins(engine, "DATABASE_URL")
    _system_urls[engine] = (settings.system_sqlalchemy_url, settings.database_prepare_threshold)

    @sa.event.listens_for(engine, "engine_disposed")
    def _dispose_system(disposed: Engine) -> None:
        companion = _system_engines.pop(disposed, None)
        if companion is not None:
            companion.dispose()

    return engine


def system_engine(engine: Engine) -> Engine:
    """The maintenance role's engine beside `engine` (made once, on first use); an engine made
    elsewhere (an owner's, in tooling) serves its own system scope."""
    companion = _system_engines.get(engine)
    if companion is not None:
        return companion
    system = _system_urls.get(engine)
    if system is None:
        return engine
    with _system_lock:
        companion = _system_engines.get(engine)
        if companion is None:
            companion = _engine(system[0], _SYSTEM_POOL_SIZE, True, system[1])
            _refuse_privileged_logins(companion, "DATABASE_SYSTEM_URL")
            _system_engines[engine] = companion
        return companion


def check_database(engine: Engine) -> None:
    """Raise a DependencyUnavailable naming Postgres and DATABASE_URL when it cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        url = make_url(str(engine.url)).render_as_string(hide_password=True)
        raise DependencyUnavailable("PostgreSQL", "DATABASE_URL", url, exc.orig or exc) from exc
