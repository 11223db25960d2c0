"""Rates in and out of each queue: counted by the fleet's Dramatiq brokers on the real RabbitMQ, or
read from RabbitMQ's management API when one is configured (here a stand-in serving its JSON)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import dramatiq
import pytest
from redis import Redis

from config import Settings
from devkit.processes import wait_for
from services import fleet_counters, queue_traffic
from services.fleet_counters import FleetCounters
from services.queue_stats import queue_depths
from services.queue_traffic import QueueTraffic
from workers.consumer import GatheredAckRabbitmqBroker

pytestmark = pytest.mark.integration


def test_a_broker_counts_what_it_publishes_and_what_its_worker_acks(
    settings: Settings, redis_client: Redis, namespace: str
) -> None:
    counters = FleetCounters(redis_client, namespace, interval=0.1)
    broker = GatheredAckRabbitmqBroker(
        url=settings.rabbitmq_url, confirm_delivery=True, middleware=[QueueTraffic(counters)]
    )
    queue = f"traffic_{uuid.uuid4().hex[:8]}"
    done: list[int] = []

    @dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"{queue}_actor")
    def handler(n: int) -> None:
        done.append(n)

    for n in range(20):
        handler.send(n)
    handler.send_with_options(args=(99,), delay=200)  # through the delay queue
    worker = dramatiq.Worker(broker, worker_threads=2)
    worker.start()
    try:
        assert wait_for(lambda: len(done) == 21, 30)
    finally:
        worker.stop()  # its shutdown writes what is left
        broker.close()
    counted = fleet_counters.totals(redis_client, namespace, queue_traffic.FAMILY, 60)
    # The delayed message went into the DQ, out of it when due, and into the queue then.
    assert counted == {
        f"in:{queue}": 21, f"out:{queue}": 21, f"in:{queue}.DQ": 1, f"out:{queue}.DQ": 1,
    }  # fmt: skip
    # Over a minute's window (the console's is 10 s), so a slow machine's start does not matter.
    rates = queue_traffic.queue_rates(redis_client, [queue, "idle"], namespace, window_seconds=60,
                                      now=time.time() + 2)  # fmt: skip
    assert rates[queue].rate_in == pytest.approx(21 / 60) and rates[queue].rate_out == pytest.approx(21 / 60)
    assert (rates["idle"].rate_in, rates["idle"].rate_out) == (0.0, 0.0)


class _Management(BaseHTTPRequestHandler):
    """Answers /api/queues/<vhost> as RabbitMQ's management plugin does, for the queues it is given."""

    rows: ClassVar[list[dict[str, object]]] = []
    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        body = json.dumps(self.rows).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def management() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Management)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://guest:guest@127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_management_api_gives_unacked_and_the_brokers_own_rates(
    settings: Settings, management: str
) -> None:
    busy, quiet, unknown = (f"mgmt_{uuid.uuid4().hex[:6]}" for _ in range(3))
    _Management.rows = [
        {"name": busy, "messages_unacknowledged": 4,
         "message_stats": {"publish_details": {"rate": 12.5}, "ack_details": {"rate": 11.0}}},
        # Nothing ever published: RabbitMQ leaves message_stats out; the rates are 0, not unknown.
        {"name": quiet, "messages_unacknowledged": 0},
        {"name": "someone-elses", "messages_unacknowledged": 9},
    ]  # fmt: skip
    depths = {d.queue: d for d in queue_depths(settings.rabbitmq_url, [busy, quiet, unknown],
                                               management_url=management, peek_oldest=False)}  # fmt: skip
    assert (depths[busy].unacked, depths[busy].rate_in, depths[busy].rate_out) == (4, 12.5, 11.0)
    assert (depths[quiet].unacked, depths[quiet].rate_in, depths[quiet].rate_out) == (0, 0.0, 0.0)
    # A queue the management API does not list is unknown there, not idle.
    assert (depths[unknown].unacked, depths[unknown].rate_in, depths[unknown].rate_out) == (None, None, None)
    assert _Management.asked[-1].startswith("/api/queues/")
