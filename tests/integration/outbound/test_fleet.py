"""The send path as it runs: Dramatiq worker processes on the real broker, the fake Graph API over
HTTP. Breakers shared by two processes, Dramatiq retries, pacing held over 10 s, exactly once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from uuid import UUID

import pytest
import sqlalchemy as sa
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from redis import Redis
from sqlalchemy.engine import Engine

from config import Settings, get_settings
from db.tables import messages
from db.uow import UnitOfWork
from devkit.processes import Process, start_worker, wait_for
from devkit.tenants import Tenant, make_tenant
from services.publisher import BrokerJobPublisher
from tests.support.fake_graph import RunningFakeGraph
from tests.support.outbound import queue
from workers.graph import BreakerPolicy, BreakerRegistry

pytestmark = pytest.mark.integration

RESET_SECONDS = 6.0


@pytest.fixture(scope="module")
def fleet_namespace() -> str:
    return f"adsapp-test:{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def workers(settings: Settings, fake_graph: RunningFakeGraph, fleet_namespace: str) -> Iterator[Process]:
    env = {
        "GRAPH_API_URL": fake_graph.url,
        "OUTBOUND_REDIS_NAMESPACE": fleet_namespace,
        "OUTBOUND_BREAKER_FAIL_MAX": "3",
        "OUTBOUND_BREAKER_RESET_SECONDS": str(RESET_SECONDS),
        "OUTBOUND_PACING_BURST_SECONDS": "0.05",
        "LOG_LEVEL": "WARNING",
    }
    process = start_worker(["outbound"], processes=2, threads=8, env=env, timeout=60)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def jobs(settings: Settings) -> Iterator[BrokerJobPublisher]:
    publisher = BrokerJobPublisher(
        RabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=True, middleware=[])
    )
    yield publisher
    publisher.close()


def enqueue(tenant: Tenant, jobs: BrokerJobPublisher, n: int, number: str | None = None) -> list[UUID]:
    commands = []
    for _ in range(n):
        body = {"to": tenant.contact(), "type": "text", "text": {"body": "hi"}}
        if number is not None:
            body["phone_number_id"] = number
        commands.append(queue(tenant, body))
    for cmd in commands:  # all at once, so the workers are never short of work
        jobs.publish(cmd.job())
    return [cmd.message_id for cmd in commands]


def statuses(engine: Engine, tenant: Tenant, ids: list[UUID]) -> dict[str, int]:
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        rows = uow.conn.execute(
            sa.select(messages.c.status, sa.func.count())
            .where(messages.c.id.in_(ids))
            .group_by(messages.c.status)
        ).all()
    return {r[0]: r[1] for r in rows}


def all_sent(engine: Engine, tenant: Tenant, ids: list[UUID], timeout: float) -> bool:
    return wait_for(lambda: statuses(engine, tenant, ids).get("sent", 0) == len(ids), timeout, interval=0.1)


def _steady(fake: RunningFakeGraph, number: str, seconds: float) -> bool:
    before = fake.requests("messages", number)
    time.sleep(seconds)
    return fake.requests("messages", number) == before


def exactly_once(fake: RunningFakeGraph, ids: list[UUID], number: str) -> None:
    log = fake.log(phone_number_id=number)
    counts = {c["marker"]: c["count"] for c in log["counts"]}
    assert {str(i) for i in ids} <= set(counts)
    assert all(counts[str(i)] == 1 for i in ids), {k: v for k, v in counts.items() if v != 1}
    assert log["duplicates"] == []


def test_queued_messages_are_sent_and_transient_errors_retried(
    workers: Process, fake: RunningFakeGraph, jobs: BrokerJobPublisher, engine: Engine
) -> None:
    tenant = make_tenant(engine, numbers=2)
    healthy = enqueue(tenant, jobs, 5, tenant.numbers[0])
    # Three in-call tries fail, then Dramatiq's retry (after its backoff) goes through.
    fake.add_fault(kind="error", code=131000, count=3, phone_number_id=tenant.numbers[1])
    flaky = enqueue(tenant, jobs, 1, tenant.numbers[1])
    assert all_sent(engine, tenant, healthy + flaky, 30), statuses(engine, tenant, healthy + flaky)
    exactly_once(fake, healthy, tenant.numbers[0])
    exactly_once(fake, flaky, tenant.numbers[1])
    assert tenant.message(flaky[0])["attempts"] == 2
    assert fake.requests("messages", tenant.numbers[1]) == 4


def test_an_outage_opens_the_breaker_for_every_process_and_recovery_sends_each_once(
    workers: Process,
    fake: RunningFakeGraph,
    jobs: BrokerJobPublisher,
    engine: Engine,
    fleet_namespace: str,
) -> None:
    tenant = make_tenant(engine)
    number = tenant.number
    observer = BreakerRegistry(
        Redis.from_url(get_settings().redis_url), namespace=f"{fleet_namespace}:graph:breaker",
        number_policy=BreakerPolicy(3, RESET_SECONDS),
    )  # fmt: skip
    fake.add_fault(kind="outage", phone_number_id=number)
    ids = enqueue(tenant, jobs, 30)
    assert wait_for(lambda: observer.state(number) == "open", 20), "the breaker never opened"

    opened = time.monotonic()
    # Calls let through before it opened finish their in-call retries (a second at most)...
    assert wait_for(lambda: _steady(fake, number, 1.0), 3), "calls kept coming after the breaker opened"
    # ...then, while it stays open, two processes keep taking the jobs and defer them: no call.
    calls = fake.requests("messages", number)
    wait_for(lambda: False, 1.5)
    assert fake.requests("messages", number) == calls
    assert time.monotonic() - opened < RESET_SECONDS
    assert fake.sends(number) == 0
    assert statuses(engine, tenant, ids).get("sending", 0) == 0

    fake.clear_faults()
    assert all_sent(engine, tenant, ids, 40), statuses(engine, tenant, ids)
    exactly_once(fake, ids, number)
    assert observer.state(number) == "closed"


def test_pacing_holds_a_number_at_its_rate(
    workers: Process, fake: RunningFakeGraph, jobs: BrokerJobPublisher, engine: Engine
) -> None:
    mps = 20
    tenant = make_tenant(engine, mps=mps)
    ids = enqueue(tenant, jobs, mps * 13)
    assert all_sent(engine, tenant, ids, 40), statuses(engine, tenant, ids)
    times = sorted(s["at"] for s in fake.log(phone_number_id=tenant.number)["sends"])
    start = times[0] + 1.0  # past the first second, whatever burst it held
    in_window = sum(1 for t in times if start <= t < start + 10.0)
    assert abs(in_window - mps * 10) <= mps * 10 * 0.05, in_window
    exactly_once(fake, ids, tenant.number)
