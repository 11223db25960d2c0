"""Send outcomes that must never turn into a duplicate or a job storm: a gateway's answer to a
send, and deferrals during a long outage."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from redis import Redis

from db.repos import outbound as repo
from db.tables import messages
from db.uow import UnitOfWork
from devkit.jobs import RecordingPublisher
from devkit.tenants import Tenant
from tests.support.fake_graph import RunningFakeGraph
from tests.support.outbound import queue
from workers.graph import Pacer
from workers.outbound.handler import SendDeps, SendOutcome, send_message

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("status", [502, 504])
def test_a_504_on_send_is_ambiguous_not_resent(
    deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant, publisher: RecordingPublisher, status: int
) -> None:
    cmd = queue(tenant)
    fake.add_fault(kind="error", code=2, http_status=status, count=1)
    assert send_message(cmd, deps) is SendOutcome.AMBIGUOUS
    row = tenant.message(cmd.message_id)
    assert (row["status"], row["attempts"], row["wamid"]) == ("ambiguous", 1, None)
    assert f"HTTP {status}" in row["error_details"]
    # A redelivered or retried job finds nothing to send.
    assert send_message(cmd, deps) is SendOutcome.SKIPPED
    assert fake.requests("messages", cmd.phone_number_id) == 1
    assert publisher.jobs == []


def test_a_meta_error_body_with_a_transient_code_is_still_retried(
    deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant
) -> None:
    cmd = queue(tenant)
    fake.add_fault(kind="outage", count=1)  # 503 with Meta's body, code 2: Meta sent nothing
    with pytest.raises(Exception, match="Service temporarily unavailable"):
        send_message(cmd, deps)
    assert tenant.message(cmd.message_id)["status"] == "queued"
    assert send_message(cmd, deps) is SendOutcome.SENT


def _orphans(tenant: Tenant) -> list[object]:
    with UnitOfWork(tenant.engine, system=True) as uow:
        found = repo.claim_orphaned_queued(uow.conn, 15 * 60.0, 500)
    return [o.message_id for o in found]


def test_a_deferral_touches_the_row_so_the_orphan_sweep_leaves_it(
    deps: SendDeps,
    fake: RunningFakeGraph,
    tenant: Tenant,
    publisher: RecordingPublisher,
    namespace: str,
    redis_client: Redis,
) -> None:
    to = tenant.contact()
    slow = replace(
        deps, pacer=Pacer(redis_client, namespace=f"{namespace}:touch", pair_rate=0.01, pair_burst=1)
    )
    assert send_message(queue(tenant, to=to), slow) is SendOutcome.SENT
    deferred = queue(tenant, to=to)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    tenant.execute(
        sa.update(messages).where(messages.c.id == deferred.message_id).values(updated_at=long_ago)
    )
    assert deferred.message_id in _orphans(tenant)  # untouched for an hour: looks orphaned

    tenant.execute(
        sa.update(messages).where(messages.c.id == deferred.message_id).values(updated_at=long_ago)
    )
    assert send_message(deferred, slow) is SendOutcome.DEFERRED
    assert publisher.jobs[-1].kwargs["message_id"] == str(deferred.message_id)
    row = tenant.message(deferred.message_id)
    assert row["status"] == "queued" and row["updated_at"] > long_ago + timedelta(minutes=59)
    assert deferred.message_id not in _orphans(tenant)


def _usage(tenant: Tenant) -> int:
    from db.repos.billing import MESSAGES_METRIC, period_of
    from db.tables import usage_counters

    with UnitOfWork(tenant.engine, system=True) as uow:
        value = uow.conn.execute(
            sa.select(usage_counters.c.value).where(
                usage_counters.c.organization_id == tenant.organization_id,
                usage_counters.c.period == period_of(),
                usage_counters.c.metric == MESSAGES_METRIC,
            )
        ).scalar()
    return int(value or 0)


def test_a_message_counts_against_the_plan_once_on_its_first_attempt(
    deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant
) -> None:
    before = _usage(tenant)
    cmd = queue(tenant)
    fake.add_fault(kind="error", code=131000, count=1)
    with pytest.raises(Exception, match="131000|Something went wrong"):
        send_message(cmd, deps)
    assert send_message(cmd, deps) is SendOutcome.SENT
    assert tenant.message(cmd.message_id)["attempts"] == 2
    assert _usage(tenant) == before + 1
