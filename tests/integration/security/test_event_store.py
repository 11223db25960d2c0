"""The audit trail is append-only for everyone the runtime logs in as, and refuses rewrites even
to the owner; send outcomes are appended with the change they describe."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db import tables as t
from db.repos import audit, outbound
from db.uow import UnitOfWork
from devkit.tenants import Tenant, make_tenant

pytestmark = pytest.mark.integration


@pytest.fixture
def tenant(engine: Engine) -> Tenant:
    return make_tenant(engine)


def _events(engine: Engine, org: uuid.UUID, aggregate_id: str) -> list[tuple[str, dict[str, object]]]:
    with UnitOfWork(engine, organization_id=org) as uow:
        rows = uow.conn.execute(
            sa.select(t.event_store.c.event_type, t.event_store.c.payload)
            .where(t.event_store.c.aggregate_id == aggregate_id)
            .order_by(t.event_store.c.id)
        ).all()
    return [(r.event_type, r.payload) for r in rows]


def test_the_event_store_is_append_only(engine: Engine, owner_engine: Engine, tenant: Tenant) -> None:
    marker = uuid.uuid4().hex
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        audit.append(uow.conn, tenant.organization_id, "test", marker, "test.written", {"n": 1})
        uow.commit()
    rewrites = (
        "UPDATE event_store SET payload = '{}'::jsonb WHERE aggregate_id = :m",
        "DELETE FROM event_store WHERE aggregate_id = :m",
    )
    for scope in ({"organization_id": tenant.organization_id}, {"system": True}):
        for statement in (*rewrites, "TRUNCATE event_store"):
            with UnitOfWork(engine, **scope) as uow:  # type: ignore[arg-type]
                with pytest.raises(sa.exc.DBAPIError, match="permission denied"):
                    uow.conn.execute(sa.text(statement), {"m": marker})
    # The owner (a superuser here) holds every privilege; the trigger still refuses.
    for statement in (*rewrites, "TRUNCATE event_store"):
        with owner_engine.connect() as conn:
            with pytest.raises(sa.exc.DBAPIError, match="event_store is append-only"):
                conn.execute(sa.text(statement), {"m": marker})
    assert _events(engine, tenant.organization_id, marker) == [("test.written", {"n": 1})]


def _sending_message(tenant: Tenant) -> uuid.UUID:
    contact_id, conversation_id, message_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    org = tenant.organization_id
    with UnitOfWork(tenant.engine, organization_id=org) as uow:
        uow.conn.execute(
            sa.insert(t.contacts).values(id=contact_id, organization_id=org, wa_id=uuid.uuid4().hex[:12])
        )
        uow.conn.execute(
            sa.insert(t.conversations).values(id=conversation_id, organization_id=org, contact_id=contact_id)
        )
        uow.conn.execute(
            sa.insert(t.messages).values(
                id=message_id, organization_id=org, conversation_id=conversation_id, contact_id=contact_id,
                direction="outbound", type="text", status="sending", attempts=2, raw={},
            )
        )  # fmt: skip
        uow.commit()
    return message_id


def test_send_outcomes_are_appended_with_their_transaction(engine: Engine, tenant: Tenant) -> None:
    wamid = f"wamid.{uuid.uuid4().hex}"
    message_id = _sending_message(tenant)
    org = tenant.organization_id
    with UnitOfWork(engine, send_batch=[org]) as work:
        # A stale attempt number appends nothing: only the attempt that stored the wamid is told.
        work.pipeline([outbound.record_sent([outbound.SentRecord(org, message_id, 1, wamid)])])
        work.pipeline([outbound.record_sent([outbound.SentRecord(org, message_id, 2, wamid)])])
        # Stored already: a late duplicate of the same attempt appends nothing either.
        work.pipeline([outbound.record_sent([outbound.SentRecord(org, message_id, 2, wamid)])], commit=True)
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        audit.record_send_outcome(
            uow.conn, tenant.organization_id, message_id, "failed", attempt=3, error_code=131026,
            error_title="Message undeliverable",
        )  # fmt: skip
        # Rolled back: not recorded.
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        audit.record_send_outcome(uow.conn, tenant.organization_id, message_id, "ambiguous", attempt=3)
        uow.commit()
    assert _events(engine, tenant.organization_id, str(message_id)) == [
        ("message.sent", {"attempt": 2, "wamid": wamid}),
        ("message.ambiguous", {"attempt": 3}),
    ]
    with pytest.raises(ValueError, match="unknown send outcome"):
        with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
            audit.record_send_outcome(uow.conn, tenant.organization_id, message_id, "maybe", attempt=1)
