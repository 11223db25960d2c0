"""The processes of a default deployment count where the console reads: the workers' broker, the
API's broker, the send path and the webhook routes all use the one shared counters of the
process, in the console's default namespace."""

from __future__ import annotations

import pytest

from config import Settings
from ingress.api import ApiOptions
from ingress.api.resources import build_resources
from ingress.console import ConsoleOptions
from services import fleet_counters
from services.queue_traffic import QueueTraffic
from workers.broker import build_broker

pytestmark = pytest.mark.integration


def test_every_counting_part_writes_where_the_console_reads(settings: Settings) -> None:
    shared = fleet_counters.shared(settings.redis_url, settings.fleet_counters_namespace)
    assert shared.namespace == ConsoleOptions.from_settings(settings).counters_namespace
    broker = build_broker(settings)
    resources = build_resources(settings, ApiOptions())
    try:
        api_broker = resources.jobs._broker  # type: ignore[attr-defined]
        for middleware in (broker.middleware, api_broker.middleware):
            traffic = [m for m in middleware if isinstance(m, QueueTraffic)]
            assert len(traffic) == 1 and traffic[0].counters is shared
    finally:
        broker.close()
        resources.close()
