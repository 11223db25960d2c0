"""Fleet-wide breakers on the real Redis: shared across processes, opened only by the right errors."""

from __future__ import annotations

import gc
import multiprocessing
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
from prometheus_client import REGISTRY
from redis import Redis

from devkit.processes import free_port, wait_for
from domain.errors import CircuitOpen, GraphApiPermanent, GraphApiTransient, GraphErrorInfo
from tests.integration.graph import procs
from tests.support.fake_graph import RunningFakeGraph
from workers.graph.breaker import BreakerPolicy, BreakerRegistry
from workers.graph.client import GraphClient

pytestmark = pytest.mark.integration
NUMBER = "pn-1"


@pytest.fixture
def registry(redis_client: Redis, namespace: str) -> BreakerRegistry:
    return BreakerRegistry(redis_client, namespace=namespace, number_policy=BreakerPolicy(3, 30))


@pytest.fixture
def graph(fake: RunningFakeGraph) -> Iterator[GraphClient]:
    with GraphClient(fake.url, "v21.0", retry_attempts=1) as client:
        yield client


@pytest.fixture
def other_process() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def send(registry: BreakerRegistry, graph: GraphClient, number: str = NUMBER) -> Any:
    return registry.call(number, lambda: graph.send_message(number, "tok", {"to": "1", "type": "text"}))


def seen(state: str) -> float | None:
    return REGISTRY.get_sample_value("adsapp_graph_breakers_seen", {"state": state})


def test_transient_failures_open_the_breaker_for_every_process(
    registry: BreakerRegistry,
    graph: GraphClient,
    fake: RunningFakeGraph,
    redis_url: str,
    namespace: str,
    other_process: ProcessPoolExecutor,
) -> None:
    fake.add_fault(kind="outage", phone_number_id=NUMBER)
    for _ in range(3):
        with pytest.raises(GraphApiTransient):
            send(registry, graph)
    assert registry.state(NUMBER) == "open"
    # Counted by state, one series per state, never one per number.
    assert (seen("open") or 0) >= 1
    samples = [s for m in REGISTRY.collect() if m.name == "adsapp_graph_breakers_seen" for s in m.samples]
    assert {tuple(s.labels) for s in samples} == {("state",)}
    with pytest.raises(CircuitOpen) as caught:
        send(registry, graph)
    assert caught.value.scope == f"number:{NUMBER}" and 25 < caught.value.retry_after_seconds <= 30

    assert other_process.submit(procs.breaker_state, redis_url, namespace, NUMBER).result(60) == "open"
    refused = other_process.submit(procs.try_send, redis_url, namespace, fake.url, NUMBER).result(60)
    assert refused == f"circuit-open:number:{NUMBER}"
    assert fake.requests("messages", NUMBER) == 3  # nothing was attempted while open

    # Another number and the API as a whole are unaffected.
    assert send(registry, graph, "pn-2").wamid
    assert registry.state() == "closed"


def test_permanent_errors_do_not_open_it(
    registry: BreakerRegistry, graph: GraphClient, fake: RunningFakeGraph
) -> None:
    fake.add_fault(kind="error", code=131047)
    for _ in range(6):
        with pytest.raises(GraphApiPermanent):
            send(registry, graph)
    assert registry.state(NUMBER) == "closed"
    assert registry.state() == "closed"


def test_a_success_resets_the_consecutive_failure_count(
    registry: BreakerRegistry, graph: GraphClient, fake: RunningFakeGraph
) -> None:
    fake.add_fault(kind="outage", count=2)
    for _ in range(2):
        with pytest.raises(GraphApiTransient):
            send(registry, graph)
    send(registry, graph)
    fake.add_fault(kind="outage", count=2)
    for _ in range(2):
        with pytest.raises(GraphApiTransient):
            send(registry, graph)
    assert registry.state(NUMBER) == "closed"


def test_half_open_probe_closes_it_after_a_success(
    redis_client: Redis, namespace: str, graph: GraphClient, fake: RunningFakeGraph
) -> None:
    gc.collect()  # breakers of earlier tests that are gone are not counted at the next change
    registry = BreakerRegistry(redis_client, namespace=namespace, number_policy=BreakerPolicy(2, 1))
    fake.add_fault(kind="outage", count=2)
    for _ in range(2):
        with pytest.raises(GraphApiTransient):
            send(registry, graph)
    assert registry.state(NUMBER) == "open"
    open_now = seen("open") or 0
    assert open_now >= 1

    deadline = time.monotonic() + 5
    while True:
        try:
            result = send(registry, graph)
            break
        except CircuitOpen:
            assert time.monotonic() < deadline, "the breaker never let a probe through"
            time.sleep(0.05)
    assert result.wamid and registry.state(NUMBER) == "closed"
    assert seen("open") == open_now - 1


def test_a_failed_probe_opens_it_again(
    redis_client: Redis, namespace: str, graph: GraphClient, fake: RunningFakeGraph
) -> None:
    registry = BreakerRegistry(redis_client, namespace=namespace, number_policy=BreakerPolicy(1, 1))
    fake.add_fault(kind="outage")
    with pytest.raises(GraphApiTransient):
        send(registry, graph)
    deadline = time.monotonic() + 5
    while True:
        try:
            send(registry, graph)
        except CircuitOpen:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        except GraphApiTransient:
            break
    assert registry.state(NUMBER) == "open"
    assert fake.requests("messages", NUMBER) == 2


def test_an_open_breaker_admits_nothing_once_redis_is_away(
    graph: GraphClient, fake: RunningFakeGraph, tmp_path: Path
) -> None:
    # pybreaker alone takes a state it cannot read for closed, which would let a call past an
    # open breaker while Redis is away; the send must wait the outage out instead.
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        assert wait_for(lambda: _pings(client), 10)
        registry = BreakerRegistry(client, number_policy=BreakerPolicy(1, 30))
        fake.add_fault(kind="outage", phone_number_id=NUMBER)
        with pytest.raises(GraphApiTransient):
            send(registry, graph)
        assert registry.state(NUMBER) == "open"
        quiet = registry.quiet_many([NUMBER])[0]  # read while Redis was there, as the send path does
    finally:
        server.kill()
        server.wait(10)
    with pytest.raises(redis.exceptions.ConnectionError):
        registry.admit(NUMBER, quiet=quiet)
    assert fake.requests("messages", NUMBER) == 1


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


def test_state_lost_with_redis_is_relearnt(
    registry: BreakerRegistry, graph: GraphClient, fake: RunningFakeGraph, redis_client: Redis, namespace: str
) -> None:
    fake.add_fault(kind="outage", phone_number_id=NUMBER)
    for _ in range(3):
        with pytest.raises(GraphApiTransient):
            send(registry, graph)
    with pytest.raises(CircuitOpen):
        send(registry, graph)
    redis_client.delete(*redis_client.scan_iter(match=f"{namespace}*"))  # a restart without persistence
    for _ in range(3):  # closed again: the number's failures are counted anew
        with pytest.raises(GraphApiTransient):
            send(registry, graph)
    with pytest.raises(CircuitOpen):
        send(registry, graph)
    assert fake.requests("messages", NUMBER) == 6


def test_only_one_probe_at_a_time_across_callers(redis_url: str, namespace: str) -> None:
    # Two registries on separate connections stand for two worker processes.
    registries = [
        BreakerRegistry(Redis.from_url(redis_url), namespace=namespace, number_policy=BreakerPolicy(1, 1))
        for _ in range(2)
    ]
    with pytest.raises(GraphApiTransient):
        registries[0].call(NUMBER, _fail)
    deadline = time.monotonic() + 5
    while registries[0]._remaining_open(registries[0]._number(NUMBER)) > 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    entered = threading.Semaphore(0)
    release = threading.Event()
    outcomes: list[str] = []
    lock = threading.Lock()

    def probe() -> str:
        entered.release()
        release.wait(5)
        return "ok"

    def caller(index: int) -> None:
        try:
            outcome = registries[index % 2].call(NUMBER, probe)
        except CircuitOpen:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    assert entered.acquire(timeout=5)
    # Everyone but the probe is turned away while it is in flight.
    deadline = time.monotonic() + 5
    while len(outcomes) < 7:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(5)
    assert sorted(outcomes) == ["ok"] + ["refused"] * 7
    assert registries[1].state(NUMBER) == "closed"


def _fail() -> None:
    raise GraphApiTransient(GraphErrorInfo(code=None, title="ConnectError: refused"))


def test_decode_responses_client_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        BreakerRegistry(Redis.from_url(redis_url, decode_responses=True))
