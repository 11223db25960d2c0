"""The set-based writes behind bulk jobs: planning's COPY keeps every value exactly (COPY's escapes),
a broadcast chunk's messages are the rows the single send path writes (contact created where
missing, the contact's one open conversation, the send job with its arguments, through the outbox),
and many jobs enqueued at once map each to its own outbox row."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import bulk_job_items, contacts, conversations, messages, outbox
from db.uow import UnitOfWork
from devkit.jobs import RecordingPublisher
from devkit.tenants import TEMPLATE, Tenant, recipient
from domain import jobs as names
from domain.ports import Job
from services import bulk, bulk_run
from tests.support.bulk import bulk_tenant, template_components

pytestmark = pytest.mark.integration

COMPONENTS = template_components("A\t1\\n", ("{{contact.wa_id}}", "é\n"))


def _rows(tenant: Tenant, statement: Any) -> list[Any]:
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        return list(uow.conn.execute(statement).mappings())


def _plan(tenant: Tenant, publisher: RecordingPublisher, wa_ids: list[str]) -> UUID:
    plan = bulk.BroadcastPlan(
        "order_update", "en_US", COMPONENTS, recipients=[bulk.Recipient(wa_id=w) for w in wa_ids]
    )
    return bulk.plan_broadcast(
        bulk.BulkPorts(tenant.engine, publisher), tenant.organization_id, plan, None
    ).id


def test_planning_copies_every_value_exactly(engine: Engine) -> None:
    tenant = bulk_tenant(engine)
    tenant.templates([TEMPLATE])
    good = recipient()
    odd = "12\tab\\c\nd\re"
    job_id = _plan(tenant, RecordingPublisher(), [good, odd])
    rows = _rows(
        tenant,
        sa.select(bulk_job_items)
        .where(bulk_job_items.c.bulk_job_id == job_id)
        .order_by(bulk_job_items.c.seq),
    )
    assert [(r["seq"], r["recipient"], r["status"]) for r in rows] == [
        (0, good, "pending"),
        (1, odd, "skipped"),
    ]
    assert rows[0]["params"]["components"][0]["parameters"][0]["text"] == "A\t1\\n"
    assert rows[0]["params"]["components"][1]["parameters"] == [
        {"type": "text", "text": good},
        {"type": "text", "text": "é\n"},
    ]
    assert rows[0]["settled_at"] is None and rows[0]["organization_id"] == tenant.organization_id
    assert rows[1]["error_code"] == "invalid_wa_id" and rows[1]["settled_at"] is not None


def test_a_chunk_writes_the_rows_of_the_single_send_path(engine: Engine) -> None:
    tenant = bulk_tenant(engine)
    tenant.templates([TEMPLATE])
    known, fresh, reopened = tenant.contact(), recipient(), tenant.contact()
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        ids = dict(uow.conn.execute(sa.select(contacts.c.wa_id, contacts.c.id)).all())
        uow.conn.execute(
            sa.insert(conversations).values(
                organization_id=tenant.organization_id, contact_id=ids[known], status="open"
            )
        )
        uow.conn.execute(sa.insert(conversations).values(
            organization_id=tenant.organization_id, contact_id=ids[reopened], status="resolved"))  # fmt: skip
        uow.commit()
    publisher = RecordingPublisher()
    job_id = _plan(tenant, publisher, [known, fresh, reopened])
    run = next(j for j in publisher.jobs if j.actor == names.RUN_BULK_CHUNK_ACTOR)
    publisher.jobs.clear()
    outcome = bulk_run.run_chunk(
        bulk_run.RunPorts(engine, publisher), tenant.organization_id, job_id, run.kwargs["chunk"]
    )
    assert outcome.action == "submitted"

    sent = _rows(
        tenant,
        sa.select(messages, contacts.c.wa_id)
        .select_from(messages.join(contacts, contacts.c.id == messages.c.contact_id))
        .order_by(contacts.c.wa_id),
    )
    assert sorted(r["wa_id"] for r in sent) == sorted([known, fresh, reopened])
    open_conversations = _rows(
        tenant,
        sa.select(conversations.c.id, conversations.c.contact_id).where(conversations.c.status != "resolved"),
    )
    assert len(open_conversations) == 3  # one each: the known one kept, two opened
    by_contact = {r["contact_id"]: r["id"] for r in open_conversations}
    for row in sent:
        assert row["status"] == "queued" and row["direction"] == "outbound"
        assert row["phone_number_id"] == tenant.number and row["type"] == "template"
        assert row["conversation_id"] == by_contact[row["contact_id"]]
        assert row["raw"]["to"] == row["wa_id"]
        assert row["raw"]["biz_opaque_callback_data"] == str(row["id"])
        assert row["raw"]["template"]["components"][1]["parameters"][0]["text"] == row["wa_id"]
    sends = [j for j in publisher.jobs if j.actor == names.SEND_MESSAGE_ACTOR]
    assert {
        (j.queue, j.kwargs["message_id"], j.kwargs["to"], j.kwargs["phone_number_id"]) for j in sends
    } == {(names.OUTBOUND_QUEUE, str(r["id"]), r["wa_id"], tenant.number) for r in sent}
    items = _rows(tenant, sa.select(bulk_job_items).where(bulk_job_items.c.bulk_job_id == job_id))
    assert {(i["recipient"], str(i["message_id"]), i["status"]) for i in items} == {
        (r["wa_id"], str(r["id"]), "submitted") for r in sent
    }
    with UnitOfWork(engine, system=True) as uow:  # published after commit: nothing left behind
        assert (
            uow.conn.execute(
                sa.select(sa.func.count())
                .select_from(outbox)
                .where(outbox.c.organization_id == tenant.organization_id)
            ).scalar_one()
            == 0
        )


class _FailsAfter:
    """Publishes `ok` jobs, then the broker is gone."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.jobs: list[Job] = []

    def publish(self, job: Job) -> None:
        if len(self.jobs) == self.ok:
            raise ConnectionError("broker down")
        self.jobs.append(job)


def test_jobs_enqueued_together_map_to_their_own_outbox_rows(engine: Engine) -> None:
    """Of 50 jobs written at once, the 20 published leave the outbox and exactly the other 30 stay
    for the sweep: each job's outbox id is its own."""
    tenant = bulk_tenant(engine)
    jobs = [Job("bulk", "actor", kwargs={"n": n, "tag": str(uuid4())}, delay_ms=n) for n in range(50)]
    publisher = _FailsAfter(20)
    with (
        pytest.raises(ConnectionError),
        UnitOfWork(engine, organization_id=tenant.organization_id, publisher=publisher) as uow,
    ):
        uow.enqueue_many(jobs)
        uow.commit()
    assert publisher.jobs == jobs[:20]
    with UnitOfWork(engine, system=True) as uow:
        left = uow.conn.execute(
            sa.select(outbox.c.kwargs, outbox.c.delay_ms)
            .where(outbox.c.organization_id == tenant.organization_id)
            .order_by(outbox.c.id)
        ).all()
    assert [(dict(k), d) for k, d in left] == [(dict(j.kwargs), j.delay_ms) for j in jobs[20:]]
