"""Changes for a number nobody owns (yet): parked raw, replayed through the outbox when the number
is added, expired after the retention; and "nobody owns it" is never believed for over a second."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine

from config import Settings
from db.repos.organizations import add_number, create_organization
from db.uow import UnitOfWork
from devkit import whatsapp as wa
from devkit.jobs import RecordingPublisher
from devkit.processes import queue_depth
from domain import jobs
from services import numbers
from services.number_routes import RouteCache
from tests.support.rows import rows
from workers.inbound import parking

pytestmark = pytest.mark.integration

CUSTOMER = "16505550111"
DAY = 86_400.0


def _parked(engine: Engine, phone_number_id: str) -> list[Any]:
    with UnitOfWork(engine, system=True) as uow:
        return list(
            uow.conn.execute(
                sa.text("SELECT * FROM parked_changes WHERE phone_number_id = :p ORDER BY id"),
                {"p": phone_number_id},
            ).mappings()
        )


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _new_org(engine: Engine) -> uuid.UUID:
    with UnitOfWork(engine, system=True) as uow:
        org = create_organization(uow.conn, f"late-{uuid.uuid4().hex[:8]}")
        uow.commit()
    return org


def _run_jobs(deliver: Callable[..., Any], published: list[Any]) -> None:
    for job in published:
        assert job.actor == jobs.WHATSAPP_DELIVERY_ACTOR and job.queue == jobs.INBOUND_QUEUE
        deliver(job.args[0], job.kwargs["received_at"])


def test_changes_for_an_unowned_number_are_replayed_when_it_is_added(
    engine: Engine, deliver: Callable[..., Any]
) -> None:
    pn = f"pn-early-{uuid.uuid4().hex[:8]}"
    first, second = wa.text(CUSTOMER, "before onboarding"), wa.text(CUSTOMER, "still before")
    received = time.time() - 3600
    before = _metric("adsapp_inbound_parked_changes_total", reason="unknown_number")
    assert deliver(wa.delivery(wa.change(pn, messages=[first])), received) == []
    deliver(wa.delivery(wa.change(pn, messages=[second])))
    deliver(wa.delivery(wa.change(pn, messages=[first])), received)  # Meta's redelivery: parked once
    parked = _parked(engine, pn)
    assert [p["reason"] for p in parked] == ["unknown_number"] * 2
    assert parked[0]["change"]["value"]["messages"] == [first]
    assert abs(parked[0]["received_at"].timestamp() - received) < 1
    assert _metric("adsapp_inbound_parked_changes_total", reason="unknown_number") == before + 2

    org = _new_org(engine)
    added = RecordingPublisher()
    with UnitOfWork(engine, organization_id=org, publisher=added) as uow:
        numbers.register_number(uow, org, phone_number_id=pn, display_phone_number="15550001111")
        uow.commit()
    [replay] = added.jobs
    assert replay.actor == jobs.REPLAY_PARKED_ACTOR

    published = RecordingPublisher()
    assert parking.replay(engine, published, **replay.kwargs) == 2
    assert _parked(engine, pn) == []
    _run_jobs(deliver, published.jobs)
    _run_jobs(deliver, published.jobs)  # a replay delivered twice stores nothing twice
    stored = rows(engine, org, "SELECT wamid, text, created_at FROM messages ORDER BY text")
    assert [(m["wamid"], m["text"]) for m in stored] == [
        (first["id"], first["text"]["body"]),
        (second["id"], second["text"]["body"]),
    ]
    assert parking.replay(engine, RecordingPublisher(), **replay.kwargs) == 0


def test_adsapp_number_add_queues_the_replay(settings: Settings, engine: Engine) -> None:
    from tests.integration.cli.test_setup_commands import adsapp

    org, pn = _new_org(engine), f"pn-cli-{uuid.uuid4().hex[:8]}"
    depth = queue_depth(settings.rabbitmq_url, jobs.INBOUND_QUEUE) if _declared(settings) else 0
    out = adsapp("number", "add", str(org), "--phone-number-id", pn, "--display-number", "+1 555")
    assert out.returncode == 0, out.stderr
    assert queue_depth(settings.rabbitmq_url, jobs.INBOUND_QUEUE) == depth + 1
    with UnitOfWork(engine, system=True) as uow:
        left = uow.conn.execute(
            sa.text("SELECT count(*) FROM outbox WHERE kwargs->>'phone_number_id' = :p"), {"p": pn}
        )
        assert left.scalar_one() == 0


def _declared(settings: Settings) -> bool:
    import pika.exceptions

    try:
        queue_depth(settings.rabbitmq_url, jobs.INBOUND_QUEUE)
    except pika.exceptions.ChannelClosedByBroker:
        return False
    return True


def test_a_number_added_by_another_path_is_replayed_by_the_sweep(
    engine: Engine, deliver: Callable[..., Any]
) -> None:
    pn = f"pn-side-{uuid.uuid4().hex[:8]}"
    message = wa.text(CUSTOMER, "arrived first")
    deliver(wa.delivery(wa.change(pn, messages=[message])))
    org = _new_org(engine)
    with UnitOfWork(engine, organization_id=org) as uow:  # no replay job: as the web app would
        add_number(uow.conn, org, phone_number_id=pn, display_phone_number="15550002222")
        uow.commit()
    published = RecordingPublisher()
    assert parking.sweep(engine, published, 7 * DAY) >= 1
    _run_jobs(deliver, [j for j in published.jobs if pn in j.args[0]])
    assert [m["wamid"] for m in rows(engine, org, "SELECT wamid FROM messages")] == [message["id"]]


def test_parked_changes_expire_after_the_retention(engine: Engine, deliver: Callable[..., Any]) -> None:
    old_pn, new_pn = f"pn-old-{uuid.uuid4().hex[:8]}", f"pn-new-{uuid.uuid4().hex[:8]}"
    deliver(wa.delivery(wa.change(old_pn, messages=[wa.text(CUSTOMER, "long ago")])), time.time() - 8 * DAY)
    deliver(wa.delivery(wa.change(new_pn, messages=[wa.text(CUSTOMER, "recent")])), time.time() - 6 * DAY)
    before = _metric("adsapp_inbound_parked_expired_total", reason="unknown_number")
    parking.sweep(engine, RecordingPublisher(), 7 * DAY)
    assert _parked(engine, old_pn) == []
    assert len(_parked(engine, new_pn)) == 1
    assert _metric("adsapp_inbound_parked_expired_total", reason="unknown_number") >= before + 1


def test_a_negative_route_is_believed_for_at_most_a_second(engine: Engine) -> None:
    now = [1000.0]
    routes = RouteCache(engine, ttl=30.0, clock=lambda: now[0])
    pn = f"pn-soon-{uuid.uuid4().hex[:8]}"
    assert routes.number(pn) is None
    org = _new_org(engine)
    with UnitOfWork(engine, organization_id=org) as uow:
        add_number(uow.conn, org, phone_number_id=pn, display_phone_number="15550003333")
        uow.commit()
    now[0] += 0.5
    assert routes.number(pn) is None  # still within the second
    now[0] += 0.51
    route = routes.number(pn)
    assert route is not None and route.organization_id == org

    # Asked to keep "nobody owns it" for a minute, it still believes it for a second at most.
    other, now[0] = f"pn-later-{uuid.uuid4().hex[:8]}", 2000.0
    lenient = RouteCache(engine, ttl=300.0, negative_ttl=60.0, clock=lambda: now[0])
    assert lenient.number(other) is None
    with UnitOfWork(engine, organization_id=org) as uow:
        add_number(uow.conn, org, phone_number_id=other, display_phone_number="15550003334")
        uow.commit()
    now[0] += 1.01
    assert lenient.number(other) is not None


def test_a_change_parked_as_its_number_is_added_sees_the_number(
    engine: Engine, deliver: Callable[..., Any]
) -> None:
    """The route is read again under the parking lock: a stale "unknown" cannot park a change."""
    pn = f"pn-race-{uuid.uuid4().hex[:8]}"
    routes = RouteCache(engine, ttl=30.0)
    assert routes.number(pn) is None  # this worker believes nobody owns it
    org = _new_org(engine)
    with UnitOfWork(engine, organization_id=org) as uow:
        add_number(uow.conn, org, phone_number_id=pn, display_phone_number="15550004444")
        uow.commit()
    from workers.inbound.decode import decode_delivery

    [change] = decode_delivery(
        wa.encode(wa.delivery(wa.change(pn, messages=[wa.text(CUSTOMER, "x")])))
    ).changes
    route = parking.park_unowned(engine, routes, change, time.time())
    assert route is not None and route.organization_id == org
    assert _parked(engine, pn) == []


def test_no_tenant_sees_the_parked_changes(engine: Engine, deliver: Callable[..., Any]) -> None:
    pn = f"pn-private-{uuid.uuid4().hex[:8]}"
    deliver(wa.delivery(wa.change(pn, messages=[wa.text(CUSTOMER, "for someone else")])))
    assert len(_parked(engine, pn)) == 1
    org = _new_org(engine)
    with UnitOfWork(engine, organization_id=org) as uow:
        assert uow.conn.execute(sa.text("SELECT count(*) FROM parked_changes")).scalar_one() == 0
        with pytest.raises(sa.exc.ProgrammingError):  # row-level security refuses the write
            uow.conn.execute(
                sa.text(
                    "INSERT INTO parked_changes (digest, change, reason, received_at) "
                    "VALUES ('x', '{}'::jsonb, 'unknown_number', now())"
                )
            )
