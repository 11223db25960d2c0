"""The send handler, one job at a time: what it records before and after each kind of answer."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from redis import Redis

from db.tables import message_status_events, messages, organizations
from db.uow import UnitOfWork
from devkit.jobs import RecordingPublisher
from devkit.tenants import Tenant
from domain.errors import GraphApiTransient
from tests.support.fake_graph import RunningFakeGraph
from tests.support.outbound import command_of, final, queue
from workers.graph import GraphClient, Pacer, SendResult
from workers.outbound.handler import SendDeps, SendOutcome, send_message

pytestmark = pytest.mark.integration


def sends_of(fake: RunningFakeGraph, message_id: object) -> int:
    log = fake.log()
    return sum(1 for s in log["sends"] if s["biz_opaque_callback_data"] == str(message_id))


def test_queued_sending_sent_with_the_wamid(deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant) -> None:
    cmd = queue(tenant)
    fake.add_fault(kind="latency", latency_ms=400)
    seen: list[str] = []

    def watch() -> None:  # the attempt is committed before the call is answered
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "sent" not in seen:
            seen.append(tenant.message(cmd.message_id)["status"])
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert send_message(cmd, deps) is SendOutcome.SENT
    watcher.join()
    assert "sending" in seen

    row = tenant.message(cmd.message_id)
    assert row["status"] == "sent" and row["attempts"] == 1 and row["sent_at"] is not None
    (sent,) = fake.log()["sends"]
    assert row["wamid"] == sent["wamid"]
    assert sent["biz_opaque_callback_data"] == str(cmd.message_id)
    assert sent["payload"]["text"] == {"body": "hi", "preview_url": False}


class _StatusFirst:
    """The Graph client, with Meta's `delivered` webhook processed (parked, its message unknown)
    between Meta's answer and the send path recording the wamid."""

    def __init__(self, graph: GraphClient, engine: sa.Engine, organization_id: object) -> None:
        self._graph, self._engine, self._org = graph, engine, organization_id
        self.wamids: list[str] = []

    def send_message(self, phone_number_id: str, token: str, payload: dict[str, object]) -> SendResult:
        result = self._graph.send_message(phone_number_id, token, payload)
        self.wamids.append(result.wamid)
        with UnitOfWork(self._engine, system=True) as uow:
            uow.conn.execute(
                sa.insert(message_status_events).values(
                    organization_id=self._org, wamid=result.wamid, status="delivered",
                    occurred_at=datetime.now(UTC), raw={}, applied=False,
                )
            )  # fmt: skip
            uow.commit()
        return result


def test_statuses_that_arrived_first_are_applied_with_the_wamid(
    deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant
) -> None:
    cmd = queue(tenant)
    graph = _StatusFirst(deps.graph, deps.engine, tenant.organization_id)

    assert send_message(cmd, replace(deps, graph=graph)) is SendOutcome.SENT  # type: ignore[arg-type]
    row = tenant.message(cmd.message_id)
    assert row["wamid"] == graph.wamids[0]
    assert row["status"] == "delivered" and row["delivered_at"] is not None
    with UnitOfWork(deps.engine, system=True) as uow:
        parked = uow.conn.execute(
            sa.select(message_status_events.c.applied, message_status_events.c.message_id).where(
                message_status_events.c.wamid == graph.wamids[0]
            )
        ).one()
    assert parked.applied and parked.message_id == cmd.message_id


def test_a_permanent_error_fails_once_with_its_code(
    deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant
) -> None:
    cmd = queue(tenant)
    fake.add_fault(kind="error", code=131026, count=1)
    assert send_message(cmd, deps) is SendOutcome.FAILED
    row = tenant.message(cmd.message_id)
    assert (row["status"], row["error_code"]) == ("failed", 131026)
    assert row["error_title"].endswith("Message undeliverable")
    assert row["failed_at"] is not None and row["wamid"] is None
    assert send_message(cmd, deps) is SendOutcome.SKIPPED
    assert fake.requests("messages", cmd.phone_number_id) == 1


def test_a_transient_error_is_raised_for_retry_and_the_retry_sends(
    deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant
) -> None:
    cmd = queue(tenant)
    fake.add_fault(kind="error", code=131000, count=1)
    with pytest.raises(GraphApiTransient):
        send_message(cmd, deps)
    row = tenant.message(cmd.message_id)
    assert (row["status"], row["attempts"], row["error_code"]) == ("queued", 1, 131000)
    assert send_message(cmd, deps) is SendOutcome.SENT
    row = tenant.message(cmd.message_id)
    assert (row["status"], row["attempts"], row["error_code"]) == ("sent", 2, None)
    assert sends_of(fake, cmd.message_id) == 1


def test_the_last_transient_failure_fails_the_message(
    deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant
) -> None:
    cmd = queue(tenant)
    fake.add_fault(kind="outage", count=1)
    with pytest.raises(GraphApiTransient):
        send_message(final(cmd), deps)
    row = tenant.message(cmd.message_id)
    assert row["status"] == "failed" and row["error_code"] == 2
    assert "retries exhausted" in row["error_details"]


def test_a_redelivered_job_never_sends_twice(deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant) -> None:
    cmd = queue(tenant)
    fake.add_fault(kind="latency", latency_ms=300)
    outcomes: list[SendOutcome] = []
    threads = [threading.Thread(target=lambda: outcomes.append(send_message(cmd, deps))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(SendOutcome.SENT) == 1
    assert send_message(cmd, deps) is SendOutcome.SKIPPED
    assert sends_of(fake, cmd.message_id) == 1
    assert fake.log()["duplicates"] == []


def test_an_ambiguous_answer_is_recorded_and_not_sent_again(
    deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant
) -> None:
    cmd = queue(tenant)
    fake.add_fault(kind="drop", count=1)  # Meta took it, the answer broke off
    assert send_message(cmd, deps) is SendOutcome.AMBIGUOUS
    row = tenant.message(cmd.message_id)
    assert row["status"] == "ambiguous" and row["wamid"] is None and row["attempts"] == 1
    assert send_message(cmd, deps) is SendOutcome.SKIPPED
    assert sends_of(fake, cmd.message_id) == 1
    assert fake.requests("messages", cmd.phone_number_id) == 1


def test_a_job_redelivered_after_a_crash_mid_call(
    deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant, publisher: RecordingPublisher
) -> None:
    cmd = queue(tenant)
    # What a worker leaves behind when it dies during the call: `sending`, attempt 1, no wamid.
    tenant.execute(
        sa.update(messages).where(messages.c.id == cmd.message_id).values(status="sending", attempts=1)
    )
    assert send_message(cmd, deps) is SendOutcome.DEFERRED  # the lease says it may still be in flight
    (job,) = publisher.jobs
    assert job.delay_ms is not None and 55_000 <= job.delay_ms <= 62_000
    assert command_of(job) == cmd

    tenant.execute(
        sa.update(messages)
        .where(messages.c.id == cmd.message_id)
        .values(updated_at=datetime.now(UTC) - timedelta(minutes=5))
    )
    assert send_message(cmd, deps) is SendOutcome.AMBIGUOUS
    row = tenant.message(cmd.message_id)
    assert row["status"] == "ambiguous" and row["attempts"] == 1
    assert fake.requests("messages") == 0


def test_an_open_breaker_defers_without_calling(
    deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant, publisher: RecordingPublisher
) -> None:
    fake.add_fault(kind="outage", phone_number_id=tenant.number)
    for _ in range(3):
        with pytest.raises(GraphApiTransient):
            send_message(queue(tenant), deps)
    assert deps.breakers.state(tenant.number) == "open"
    calls = fake.requests("messages", tenant.number)
    cmd = queue(tenant)
    assert send_message(cmd, deps) is SendOutcome.DEFERRED
    assert fake.requests("messages", tenant.number) == calls
    row = tenant.message(cmd.message_id)
    assert (row["status"], row["attempts"]) == ("queued", 0)
    assert publisher.jobs[-1].delay_ms is not None and publisher.jobs[-1].delay_ms > 20_000


def test_pacing_defers_instead_of_calling(
    deps: SendDeps,
    fake: RunningFakeGraph,
    tenant: Tenant,
    publisher: RecordingPublisher,
    namespace: str,
    redis_client: Redis,
) -> None:
    to = tenant.contact()
    slow = Pacer(redis_client, namespace=f"{namespace}:pair", pair_rate=0.1, pair_burst=1)
    paced = replace(deps, pacer=slow)
    assert send_message(queue(tenant, to=to), paced) is SendOutcome.SENT
    second = queue(tenant, to=to)
    assert send_message(second, paced) is SendOutcome.DEFERRED  # one message per 10 s to this customer
    assert tenant.message(second.message_id)["status"] == "queued"
    assert 5_000 <= (publisher.jobs[-1].delay_ms or 0) <= 10_500
    assert fake.requests("messages", tenant.number) == 1


def test_a_refused_organization_fails_its_queued_messages(
    deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant
) -> None:
    cmd = queue(tenant)
    with UnitOfWork(tenant.engine, system=True) as uow:
        uow.conn.execute(
            sa.update(organizations)
            .where(organizations.c.id == tenant.organization_id)
            .values(subscription_status="unpaid")
        )
        uow.commit()
    assert send_message(cmd, deps) is SendOutcome.REFUSED
    row = tenant.message(cmd.message_id)
    assert (row["status"], row["error_details"], row["attempts"]) == ("failed", "subscription_unpaid", 0)
    assert fake.requests("messages") == 0


def test_an_unknown_number_fails_the_message(deps: SendDeps, fake: RunningFakeGraph, tenant: Tenant) -> None:
    cmd = queue(tenant)
    assert send_message(replace(cmd, phone_number_id="pn-gone"), deps) is SendOutcome.FAILED
    assert tenant.message(cmd.message_id)["status"] == "failed"
