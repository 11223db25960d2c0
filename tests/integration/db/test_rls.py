"""Row-level security, tested as the application role (a superuser would bypass every policy)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db import tables as t
from db.repos.organizations import create_organization
from db.tenants import resolve_phone_number
from db.uow import UnitOfWork
from tests.support.seed import rows_for, seed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_orgs(engine: Engine) -> tuple[uuid.UUID, uuid.UUID]:
    with UnitOfWork(engine, system=True) as uow:
        a = create_organization(uow.conn, "A")
        b = create_organization(uow.conn, "B")
        seed(uow.conn, a)
        seed(uow.conn, b)
        uow.commit()
    return a, b


def test_every_table_with_organization_id_has_forced_rls_and_is_not_owned_by_the_app(
    owner_engine: Engine, settings: object
) -> None:
    with owner_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                """
                SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) AS owner
                FROM pg_class c
                WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                  AND (EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                               AND a.attname = 'organization_id' AND NOT a.attisdropped)
                       OR c.relname = 'organizations')
                """
            )
        ).all()
        app_role = conn.execute(sa.text("SELECT current_setting('is_superuser')")).scalar()
    assert app_role == "on"  # the owner in these tests is a superuser, so the app must not be it
    names = {r.relname for r in rows}
    assert set(t.TENANT_TABLES) | {"organizations"} <= names
    for row in rows:
        assert row.relrowsecurity and row.relforcerowsecurity, row.relname
        assert row.owner != "adsapp_app", row.relname


def test_app_role_is_plain(engine: Engine) -> None:
    with engine.connect() as conn:
        who = conn.execute(
            sa.text(
                "SELECT current_user, r.rolsuper, r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user"
            )
        ).one()
    assert who.current_user == "adsapp_app"
    assert not who.rolsuper and not who.rolbypassrls


@pytest.mark.parametrize("table_name", [*t.TENANT_TABLES, "organizations"])
def test_scope_a_sees_no_row_of_b(
    engine: Engine, two_orgs: tuple[uuid.UUID, uuid.UUID], table_name: str
) -> None:
    a, b = two_orgs
    table = t.metadata.tables[table_name]
    key = table.c.id if table_name == "organizations" else table.c.organization_id
    with UnitOfWork(engine, organization_id=a) as uow:
        mine = uow.conn.execute(sa.select(sa.func.count()).select_from(table).where(key == a)).scalar_one()
        theirs = uow.conn.execute(sa.select(sa.func.count()).select_from(table).where(key == b)).scalar_one()
        total = uow.conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    assert mine >= 1
    assert theirs == 0
    assert total == mine


@pytest.mark.parametrize("table_name", t.TENANT_TABLES)
def test_scope_a_cannot_insert_for_b(
    engine: Engine, two_orgs: tuple[uuid.UUID, uuid.UUID], table_name: str
) -> None:
    a, b = two_orgs
    values = next(v for tbl, v in rows_for(b) if tbl.name == table_name)
    with UnitOfWork(engine, organization_id=a) as uow:
        with pytest.raises(sa.exc.DBAPIError, match="row-level security"):
            uow.conn.execute(sa.insert(t.metadata.tables[table_name]).values(**values))


def test_scope_a_cannot_move_its_rows_to_b(engine: Engine, two_orgs: tuple[uuid.UUID, uuid.UUID]) -> None:
    a, b = two_orgs
    with UnitOfWork(engine, organization_id=a) as uow:
        with pytest.raises(sa.exc.DBAPIError, match="row-level security"):
            uow.conn.execute(sa.update(t.contacts).values(organization_id=b))


def test_no_scope_means_no_rows(engine: Engine, two_orgs: tuple[uuid.UUID, uuid.UUID]) -> None:
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.messages)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(t.organizations)).scalar_one() == 0


def test_scope_does_not_leak_to_the_next_unit_of_work(
    engine: Engine, two_orgs: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, _ = two_orgs
    with UnitOfWork(engine, organization_id=a) as uow:
        assert uow.conn.execute(sa.select(sa.func.count()).select_from(t.contacts)).scalar_one() >= 1
    # The same pooled connection comes back with no tenant set: SET LOCAL ended with the transaction.
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT app_current_org()")).scalar() is None
        assert conn.execute(sa.select(sa.func.count()).select_from(t.contacts)).scalar_one() == 0


def test_phone_number_routing_is_the_narrow_cross_tenant_read(
    engine: Engine, two_orgs: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = two_orgs
    with UnitOfWork(engine, system=True) as uow:
        b_number = uow.conn.execute(
            sa.select(t.whatsapp_numbers.c.phone_number_id).where(t.whatsapp_numbers.c.organization_id == b)
        ).scalar_one()
    with UnitOfWork(engine, organization_id=a) as uow:
        route = resolve_phone_number(uow.conn, b_number)
        assert route is not None and route.organization_id == b and route.mps == 80
        assert resolve_phone_number(uow.conn, "no-such-number") is None
        # ...and the function did not open the table itself to tenant A.
        assert (
            uow.conn.execute(
                sa.select(sa.func.count())
                .select_from(t.whatsapp_numbers)
                .where(t.whatsapp_numbers.c.organization_id == b)
            ).scalar_one()
            == 0
        )
    with engine.connect() as conn:
        assert resolve_phone_number(conn, b_number) is not None  # works with no scope at all


def _third_org(engine: Engine) -> uuid.UUID:
    with UnitOfWork(engine, system=True) as uow:
        c = create_organization(uow.conn, "C")
        seed(uow.conn, c)
        uow.commit()
    return c


@pytest.mark.parametrize("table_name", t.TENANT_TABLES)
def test_a_send_batch_reads_only_its_organizations_send_rows(
    engine: Engine, two_orgs: tuple[uuid.UUID, uuid.UUID], table_name: str
) -> None:
    a, _ = two_orgs
    table = t.metadata.tables[table_name]
    key = table.c.id if table_name == "organizations" else table.c.organization_id
    readable = {"messages", "message_status_events", "usage_counters"}
    with UnitOfWork(engine, send_batch=[a]) as uow:
        seen = set(uow.conn.execute(sa.select(key).distinct().select_from(table)).scalars())
    # Only the send path's tables open to a send batch, and only for the batch's organizations.
    assert seen == ({a} if table_name in readable else set())


def test_a_send_batch_writes_only_what_the_send_path_writes(
    engine: Engine, two_orgs: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = two_orgs
    c = _third_org(engine)
    with UnitOfWork(engine, send_batch=[a, b]) as uow:
        touched = uow.conn.execute(
            sa.update(t.messages)
            .where(t.messages.c.organization_id.in_([a, b, c]))
            .values(text=t.messages.c.text)
        ).rowcount
        in_batch = uow.conn.execute(
            sa.select(sa.func.count()).select_from(t.messages).where(t.messages.c.organization_id.in_([a, b]))
        ).scalar_one()
        assert touched == in_batch >= 2  # a's and b's messages, none of c's
        # Nothing else: no contact, no message deleted, no row moved out of the batch.
        assert uow.conn.execute(sa.update(t.contacts).values(wa_id=t.contacts.c.wa_id)).rowcount == 0
        assert uow.conn.execute(sa.delete(t.messages)).rowcount == 0
        with pytest.raises(sa.exc.DBAPIError, match="row-level security"):
            uow.conn.execute(
                sa.update(t.messages).where(t.messages.c.organization_id == a).values(organization_id=c)
            )
    with UnitOfWork(engine, send_batch=[a]) as uow:
        values = next(v for tbl, v in rows_for(a) if tbl.name == "messages")
        with pytest.raises(sa.exc.DBAPIError, match="row-level security"):
            uow.conn.execute(sa.insert(t.messages).values(**{**values, "id": uuid.uuid4(), "wamid": None}))


def test_switching_tenant_ends_the_send_batch_scope(
    engine: Engine, two_orgs: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = two_orgs
    with UnitOfWork(engine, send_batch=[a, b]) as uow:
        uow.switch_tenant(b)
        orgs = set(uow.conn.execute(sa.select(t.messages.c.organization_id).distinct()).scalars())
    assert orgs == {b}
