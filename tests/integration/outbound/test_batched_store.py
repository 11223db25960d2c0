"""Claims and wamids of several organizations in one transaction, each under its own scope."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import messages
from db.uow import UnitOfWork
from devkit.jobs import RecordingPublisher
from tests.support.outbound import queue
from tests.support.tenants import make_tenant
from workers.inbound.statuses import apply_pending_statuses
from workers.outbound.ports import Claim
from workers.outbound.store import PostgresSendStore

pytestmark = pytest.mark.integration


def test_a_switched_tenant_scope_sees_only_that_organization(engine: Engine) -> None:
    a, b = make_tenant(engine), make_tenant(engine)
    mine_a, mine_b = queue(a), queue(b)
    with UnitOfWork(engine, organization_id=a.organization_id) as uow:
        assert uow.conn.execute(sa.select(messages.c.id)).scalars().all() == [mine_a.message_id]
        uow.switch_tenant(b.organization_id)
        assert uow.conn.execute(sa.select(messages.c.id)).scalars().all() == [mine_b.message_id]
        # An update under B's scope cannot reach A's message.
        touched = uow.conn.execute(
            sa.update(messages).where(messages.c.id == mine_a.message_id).values(text="x")
        ).rowcount
        assert touched == 0


def test_claims_and_wamids_of_several_organizations_share_a_batch(engine: Engine) -> None:
    tenants = [make_tenant(engine) for _ in range(3)]
    commands = [queue(t) for t in tenants for _ in range(2)]
    store = PostgresSendStore(engine, RecordingPublisher(), apply_pending_statuses)

    async def run() -> list[object]:
        claims = await asyncio.gather(*(store.claim(c.organization_id, c.message_id) for c in commands))
        assert all(isinstance(c, Claim) and c.attempt == 1 for c in claims)
        return list(
            await asyncio.gather(
                *(
                    store.record_sent(c.organization_id, c.message_id, 1, f"wamid.{c.message_id}")
                    for c in commands
                )
            )
        )

    created = asyncio.run(run())
    assert all(c is not None for c in created)
    for tenant in tenants:
        for cmd in (c for c in commands if c.organization_id == tenant.organization_id):
            row = tenant.message(cmd.message_id)
            assert (row["status"], row["wamid"], row["attempts"]) == ("sent", f"wamid.{cmd.message_id}", 1)
