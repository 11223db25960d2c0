"""The send handler over in-memory fakes of its ports: the order of record and call, and what
each kind of answer leaves behind."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import pytest

from domain.errors import GraphAmbiguousOutcome, GraphApiPermanent, GraphApiTransient, GraphErrorInfo
from tests.support.counts import RecordedCounts
from tests.unit.outbound.fakes import (
    CountingPacer,
    MemoryStore,
    ScriptedGraph,
    SwitchBreakers,
    ports,
)
from workers.graph.models import SendResult
from workers.outbound.handler import SendCommand, SendOutcome, send_one

ORG = uuid4()
OK = SendResult(wamid="wamid.1", wa_id="1555")


def command(message_id: UUID, final: bool = False) -> SendCommand:
    return SendCommand(ORG, message_id, "pn-1", "1555", final)


def run(cmd: SendCommand, store: MemoryStore, graph: ScriptedGraph, **overrides: object) -> SendOutcome:
    return asyncio.run(send_one(cmd, ports(store, graph, ORG, **overrides)))


def test_the_attempt_is_on_record_before_the_call_and_the_wamid_after() -> None:
    store = MemoryStore()
    message_id = store.add()
    graph = ScriptedGraph(store, OK)
    breakers = SwitchBreakers()
    assert run(command(message_id), store, graph, breakers=breakers) is SendOutcome.SENT
    assert graph.statuses_at_call == ["sending"]
    row = store.rows[message_id]
    assert (row.status, row.attempts, row.wamid) == ("sent", 1, "wamid.1")
    assert breakers.log == ["success"]


def test_an_open_breaker_defers_before_anything_is_claimed() -> None:
    store = MemoryStore()
    message_id = store.add()
    graph = ScriptedGraph(store, OK)
    assert (
        run(command(message_id), store, graph, breakers=SwitchBreakers(open_for=25.0)) is SendOutcome.DEFERRED
    )
    assert graph.calls == []
    assert (store.rows[message_id].status, store.rows[message_id].attempts) == ("queued", 0)
    (job,) = store.deferred
    assert job.delay_ms == 25_000 and job.kwargs["message_id"] == str(message_id)
    assert store.rows[message_id].touched == 1


def test_a_pacing_deferral_touches_the_row_and_enqueues_one_delayed_job() -> None:
    store = MemoryStore()
    message_id = store.add()
    graph = ScriptedGraph(store, OK)
    counts = RecordedCounts()
    outcome = run(command(message_id), store, graph, pacer=CountingPacer(defer_after=0), counters=counts)
    assert outcome is SendOutcome.DEFERRED
    assert graph.calls == [] and store.rows[message_id].touched == 1
    assert [job.delay_ms for job in store.deferred] == [7_500]
    # Counted for the fleet-wide figure of the number, by its reason.
    assert counts.added == [("deferrals", "pn-1:pair_rate", 1)]


def test_a_breaker_deferral_is_counted_under_its_own_reason() -> None:
    store = MemoryStore()
    message_id = store.add()
    counts = RecordedCounts()
    run(
        command(message_id),
        store,
        ScriptedGraph(store, OK),
        breakers=SwitchBreakers(open_for=5.0),
        counters=counts,
    )
    assert counts.added == [("deferrals", "pn-1:circuit_open", 1)]


def test_an_ambiguous_answer_is_recorded_counted_by_the_breakers_and_never_resent() -> None:
    store = MemoryStore()
    message_id = store.add()
    graph = ScriptedGraph(store, GraphAmbiguousOutcome("HTTP 504 Gateway Timeout", "pn-1"))
    breakers = SwitchBreakers()
    assert run(command(message_id), store, graph, breakers=breakers) is SendOutcome.AMBIGUOUS
    assert store.rows[message_id].status == "ambiguous"
    assert breakers.log == ["GraphAmbiguousOutcome"]
    assert run(command(message_id), store, graph, breakers=breakers) is SendOutcome.SKIPPED
    assert len(graph.calls) == 1
    assert breakers.log[-1] == "released"  # a claim decided without a call records nothing


def test_a_transient_error_releases_the_attempt_and_raises_for_a_retry() -> None:
    store = MemoryStore()
    message_id = store.add()
    graph = ScriptedGraph(
        store, GraphApiTransient(GraphErrorInfo(code=131000, title="boom", http_status=500)), OK
    )
    with pytest.raises(GraphApiTransient):
        run(command(message_id), store, graph)
    assert (store.rows[message_id].status, store.rows[message_id].error_code) == ("queued", 131000)
    assert run(command(message_id), store, graph) is SendOutcome.SENT
    assert store.rows[message_id].attempts == 2


def test_the_last_transient_failure_fails_the_message() -> None:
    store = MemoryStore()
    message_id = store.add()
    graph = ScriptedGraph(store, GraphApiTransient(GraphErrorInfo(code=2, title="down", http_status=503)))
    with pytest.raises(GraphApiTransient):
        run(command(message_id, final=True), store, graph)
    assert store.rows[message_id].status == "failed"


def test_a_permanent_error_fails_once_with_its_code() -> None:
    store = MemoryStore()
    message_id = store.add()
    graph = ScriptedGraph(store, GraphApiPermanent(GraphErrorInfo(code=131026, title="undeliverable")))
    assert run(command(message_id), store, graph) is SendOutcome.FAILED
    assert (store.rows[message_id].status, store.rows[message_id].error_code) == ("failed", 131026)


def test_an_unknown_number_fails_the_queued_message_without_a_call() -> None:
    store = MemoryStore()
    message_id = store.add()
    graph = ScriptedGraph(store, OK)
    cmd = SendCommand(ORG, message_id, "pn-gone", "1555")
    assert run(cmd, store, graph) is SendOutcome.FAILED
    assert store.rows[message_id].status == "failed" and graph.calls == []


def test_duplicate_jobs_in_flight_together_send_once() -> None:
    store = MemoryStore()
    message_id = store.add()
    graph = ScriptedGraph(store, OK, delay=0.05)

    async def together() -> list[SendOutcome]:
        shared = ports(store, graph, ORG)
        return list(await asyncio.gather(*(send_one(command(message_id), shared) for _ in range(5))))

    outcomes = asyncio.run(together())
    assert outcomes.count(SendOutcome.SENT) == 1
    assert outcomes.count(SendOutcome.DEFERRED) == 4
    assert len(graph.calls) == 1
