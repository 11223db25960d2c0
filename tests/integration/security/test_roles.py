"""The runtime's roles: the application role cannot lift row-level security from inside a
session, only the maintenance role opens the system scope, and only the application role may call
the SECURITY DEFINER routing functions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from config import Settings
from config.errors import ConfigurationError
from db import tables as t
from db.engine import create_db_engine
from db.uow import UnitOfWork
from devkit.tenants import Tenant, make_tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two(engine: Engine) -> tuple[Tenant, Tenant]:
    return make_tenant(engine), make_tenant(engine)


def _numbers_of(conn: sa.Connection, org: uuid.UUID) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(t.whatsapp_numbers)
            .where(t.whatsapp_numbers.c.organization_id == org)
        ).scalar_one()
    )


def test_the_app_role_cannot_lift_rls(engine: Engine, two: tuple[Tenant, Tenant]) -> None:
    a, b = two
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT session_user, current_user")).one() == ("adsapp_app",) * 2
        conn.execute(sa.text("SET app.system = 'on'"))
        assert _numbers_of(conn, b.organization_id) == 0
        conn.execute(sa.text("RESET ROLE"))
        assert conn.execute(sa.text("SELECT current_user")).scalar_one() == "adsapp_app"
        assert _numbers_of(conn, b.organization_id) == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(t.organizations)).scalar_one() == 0
        conn.rollback()
        for escape in ("SET ROLE postgres", "SET ROLE adsapp_system", "SET SESSION AUTHORIZATION postgres"):
            with pytest.raises(sa.exc.DBAPIError, match="permission denied"):
                conn.execute(sa.text(escape))
            conn.rollback()
    # Inside tenant A's unit of work, setting the system flag changes nothing either.
    with UnitOfWork(engine, organization_id=a.organization_id) as uow:
        uow.conn.execute(sa.text("SELECT set_config('app.system', 'on', true)"))
        assert _numbers_of(uow.conn, b.organization_id) == 0
        assert _numbers_of(uow.conn, a.organization_id) == 1


def test_the_system_scope_is_the_maintenance_roles(engine: Engine, two: tuple[Tenant, Tenant]) -> None:
    a, b = two
    with UnitOfWork(engine, system=True) as uow:
        assert uow.conn.execute(sa.text("SELECT current_user")).scalar_one() == "adsapp_system"
        assert _numbers_of(uow.conn, a.organization_id) == 1
        assert _numbers_of(uow.conn, b.organization_id) == 1
    with UnitOfWork(engine, organization_id=a.organization_id) as uow:
        assert uow.conn.execute(sa.text("SELECT current_user")).scalar_one() == "adsapp_app"


def test_runtime_roles_are_plain_and_members_of_nothing(owner_engine: Engine) -> None:
    with owner_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcanlogin, r.rolcreaterole, "
                "(SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) AS memberships "
                "FROM pg_roles r WHERE r.rolname IN ('adsapp_app', 'adsapp_system') ORDER BY r.rolname"
            )
        ).all()
    assert [r.rolname for r in rows] == ["adsapp_app", "adsapp_system"]
    for row in rows:
        assert row.rolcanlogin and not (row.rolsuper or row.rolbypassrls or row.rolcreaterole), row
        assert row.memberships == 0, row


def test_the_runtime_refuses_a_superuser_login(settings: Settings) -> None:
    as_owner = settings.model_copy(update={"database_url": settings.admin_sqlalchemy_url})
    engine = create_db_engine(as_owner, pool_size=1)
    try:
        with pytest.raises(ConfigurationError, match="DATABASE_URL must log in as a plain role"):
            engine.connect()
    finally:
        engine.dispose()


@pytest.fixture
def stranger(owner_engine: Engine) -> Iterator[str]:
    """A fresh role with nothing but what PUBLIC has."""
    role = f"adsapp_probe_{uuid.uuid4().hex[:8]}"
    with owner_engine.begin() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" NOLOGIN'))
    yield role
    with owner_engine.begin() as conn:
        conn.execute(sa.text(f'DROP ROLE "{role}"'))


def test_no_role_but_the_app_role_can_route(
    owner_engine: Engine, engine: Engine, stranger: str, two: tuple[Tenant, Tenant]
) -> None:
    a, _ = two
    with owner_engine.connect() as conn:
        functions = conn.execute(
            sa.text(
                "SELECT p.oid, p.oid::regprocedure::text AS name FROM pg_proc p "
                "WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef"
            )
        ).all()
        names = {f.name for f in functions}
        assert {"app_resolve_phone_number(text)", "app_resolve_api_key(text)"} <= names
        for function in functions:
            for role, allowed in ((stranger, False), ("adsapp_system", False), ("adsapp_app", True)):
                may = conn.execute(
                    sa.text("SELECT has_function_privilege(:r, :f, 'EXECUTE')"),
                    {"r": role, "f": function.oid},
                ).scalar_one()
                assert may is allowed, (role, function.name)
        conn.execute(sa.text(f'SET ROLE "{stranger}"'))
        with pytest.raises(
            sa.exc.DBAPIError, match="permission denied for function app_resolve_phone_number"
        ):
            conn.execute(sa.text("SELECT * FROM app_resolve_phone_number(:p)"), {"p": a.number})
        conn.rollback()
    with engine.connect() as conn:
        route = conn.execute(sa.text("SELECT * FROM app_resolve_phone_number(:p)"), {"p": a.number}).one()
    assert route.organization_id == a.organization_id
