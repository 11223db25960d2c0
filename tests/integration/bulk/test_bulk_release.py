"""How many of a broadcast's chunks planning releases: the number's seconds of sends from the start."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from devkit.jobs import RecordingPublisher
from devkit.tenants import TEMPLATE
from domain import bulk as rules
from domain import jobs as names
from services import bulk
from tests.support.bulk import bulk_tenant, template_components

pytestmark = pytest.mark.integration

COMPONENTS = template_components("h", ("{{contact.wa_id}}", "b"))


@pytest.mark.parametrize(("mps", "released"), [(80, rules.RELEASE_WINDOW), (1000, 6)])
def test_planning_releases_the_broadcasts_whole_window(engine: Engine, mps: int, released: int) -> None:
    tenant = bulk_tenant(engine, mps=mps)
    tenant.templates([TEMPLATE])
    size = rules.chunk_size_for(mps)
    recipients = [bulk.Recipient(wa_id=f"1555{mps:04d}{n:06d}") for n in range(size * 8)]
    publisher = RecordingPublisher()
    plan = bulk.BroadcastPlan("order_update", "en_US", COMPONENTS, recipients=recipients)
    bulk.plan_broadcast(bulk.BulkPorts(tenant.engine, publisher), tenant.organization_id, plan, None)
    runs = [j for j in publisher.jobs if j.actor == names.RUN_BULK_CHUNK_ACTOR]
    assert rules.release_window(size, mps) == released
    assert sorted(int(j.kwargs["chunk"]) for j in runs) == list(range(released))
