"""Claims and wamids of several organizations in one transaction, each under its own scope."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import event_store, message_status_events, messages
from db.uow import UnitOfWork
from devkit.jobs import RecordingPublisher
from devkit.tenants import make_tenant
from tests.support.outbound import queue
from workers.inbound.statuses import apply_pending_statuses
from workers.outbound.ports import Claim, Decided
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


def test_statuses_parked_before_their_wamids_are_applied_in_a_batch_of_several_organizations(
    engine: Engine,
) -> None:
    tenants = [make_tenant(engine) for _ in range(3)]
    commands = [queue(t) for t in tenants for _ in range(2)]
    early = {c.message_id for c in commands[1::2]}  # one message of each organization
    with UnitOfWork(engine, system=True) as uow:
        for cmd in commands:
            if cmd.message_id in early:
                uow.conn.execute(
                    sa.insert(message_status_events).values(
                        organization_id=cmd.organization_id, wamid=f"wamid.{cmd.message_id}",
                        status="delivered", occurred_at=datetime.now(UTC), raw={}, applied=False,
                    )
                )  # fmt: skip
        uow.commit()
    store = PostgresSendStore(engine, RecordingPublisher(), apply_pending_statuses)

    async def run() -> None:
        await asyncio.gather(*(store.claim(c.organization_id, c.message_id) for c in commands))
        await asyncio.gather(
            *(
                store.record_sent(c.organization_id, c.message_id, 1, f"wamid.{c.message_id}")
                for c in commands
            )
        )

    asyncio.run(run())
    for tenant in tenants:
        for cmd in (c for c in commands if c.organization_id == tenant.organization_id):
            row = tenant.message(cmd.message_id)
            assert row["wamid"] == f"wamid.{cmd.message_id}"
            assert row["status"] == ("delivered" if cmd.message_id in early else "sent")
    with UnitOfWork(engine, system=True) as uow:
        applied = uow.conn.execute(
            sa.select(message_status_events.c.message_id).where(message_status_events.c.applied)
            .where(message_status_events.c.message_id.in_([c.message_id for c in commands]))
        ).scalars()  # fmt: skip
        assert set(applied) == early


def _outcome_events(engine: Engine, org: uuid.UUID) -> list[tuple[str, str, dict[str, object]]]:
    with UnitOfWork(engine, organization_id=org) as uow:
        rows = uow.conn.execute(
            sa.select(event_store.c.aggregate_id, event_store.c.event_type, event_store.c.payload)
            .where(event_store.c.event_type.like("message.%"), event_store.c.event_type != "message.accepted")
            .order_by(event_store.c.id)
        ).all()
    return [(r.aggregate_id, r.event_type, r.payload) for r in rows]


def test_send_outcomes_are_audited_with_their_transaction_and_no_statement_of_their_own(
    engine: Engine,
) -> None:
    tenants = [make_tenant(engine) for _ in range(2)]
    sent = [queue(t) for t in tenants for _ in range(3)]
    failed, ambiguous, released = (queue(tenants[0]) for _ in range(3))
    store = PostgresSendStore(engine, RecordingPublisher(), apply_pending_statuses)
    inserts: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO EVENT_STORE"):
            inserts.append(statement)

    async def run() -> None:
        everyone = [*sent, failed, ambiguous, released]
        await asyncio.gather(*(store.claim(c.organization_id, c.message_id) for c in everyone))
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            await asyncio.gather(
                *(
                    store.record_sent(c.organization_id, c.message_id, 1, f"wamid.{c.message_id}")
                    for c in sent
                )
            )
            batched = len(inserts)
            # A late duplicate of an attempt already settled records nothing.
            assert not await store.record_sent(sent[0].organization_id, sent[0].message_id, 1, "wamid.late")
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        # `message.sent` rides in the statement that stores the wamids: no insert of its own.
        assert batched == 0
        org = tenants[0].organization_id
        assert await store.record_failed(
            org, failed.message_id, 1, code=131026, title="Undeliverable", details=None
        )
        assert await store.record_ambiguous(org, ambiguous.message_id, 1, "timed out after sending")
        assert await store.release(org, released.message_id, 1, code=None, title="refused", details=None)
        assert not await store.record_ambiguous(org, failed.message_id, 1, "settled already")

    asyncio.run(run())
    for tenant in tenants:
        mine = [c for c in sent if c.organization_id == tenant.organization_id]
        expected = [
            (str(c.message_id), "message.sent", {"attempt": 1, "wamid": f"wamid.{c.message_id}"})
            for c in mine
        ]
        events = _outcome_events(engine, tenant.organization_id)
        assert sorted(e for e in events if e[1] == "message.sent") == sorted(expected)
    rare = [e for e in _outcome_events(engine, tenants[0].organization_id) if e[1] != "message.sent"]
    assert rare == [
        (str(failed.message_id), "message.failed",
         {"attempt": 1, "error_code": 131026, "error_title": "Undeliverable"}),
        (str(ambiguous.message_id), "message.ambiguous", {"attempt": 1}),
        (str(released.message_id), "message.released", {"attempt": 1, "error_code": None, "error_title": "refused"}),
    ]  # fmt: skip


def test_a_job_naming_another_organization_claims_nothing_in_a_shared_batch(engine: Engine) -> None:
    a, b = make_tenant(engine), make_tenant(engine)
    mine_a, mine_b = queue(a), queue(b)
    store = PostgresSendStore(engine, RecordingPublisher(), apply_pending_statuses)

    async def run() -> list[object]:
        # B's message asked for under A's scope, beside A's and B's own claims in one batch.
        return list(
            await asyncio.gather(
                store.claim(a.organization_id, mine_b.message_id),
                store.claim(a.organization_id, mine_a.message_id),
                store.claim(b.organization_id, mine_b.message_id),
            )
        )

    wrong, claim_a, claim_b = asyncio.run(run())
    assert wrong == Decided("skipped")
    assert isinstance(claim_a, Claim) and isinstance(claim_b, Claim)
    assert b.message(mine_b.message_id)["attempts"] == 1


def test_a_failed_part_of_a_batch_fails_its_own_jobs_and_the_claims_committed_beside_it_go_on(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked, batched = make_tenant(engine), make_tenant(engine)
    mine_checked, mine_batched = queue(checked), queue(batched)
    store = PostgresSendStore(engine, RecordingPublisher(), apply_pending_statuses)
    # The first organization's plan is due to be checked (a transaction of its own); the second's
    # allowed a moment ago, so it goes in the batch's shared statement, which fails here.
    monkeypatch.setattr(store._billing, "allowed_recently", lambda org: org == batched.organization_id)

    def broken(_wanted: object) -> object:
        raise RuntimeError("the shared statement failed")

    monkeypatch.setattr(store, "_claim_batched", broken)

    async def run() -> list[object]:
        return list(
            await asyncio.gather(
                store.claim(checked.organization_id, mine_checked.message_id),
                store.claim(batched.organization_id, mine_batched.message_id),
                return_exceptions=True,
            )
        )

    claim, failure = asyncio.run(run())
    assert isinstance(claim, Claim) and claim.attempt == 1
    assert isinstance(failure, RuntimeError)
    assert checked.message(mine_checked.message_id)["status"] == "sending"
    assert batched.message(mine_batched.message_id)["status"] == "queued"
