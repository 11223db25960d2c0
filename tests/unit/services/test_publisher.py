from __future__ import annotations

import contextvars
import threading
from typing import Any

import dramatiq
import pytest

from domain.ports import BatchJobPublisher, Job
from services.publisher import BrokerJobPublisher

_REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


class _Broker:
    """Records what it is asked to enqueue, from which thread and under which context; refuses
    the jobs whose `n` is in `refuse`."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.refuse = refuse
        self.enqueued: list[tuple[dict[str, Any], int | None, str, int]] = []
        self.lock = threading.Lock()
        self.closed = False

    def enqueue(self, message: dramatiq.Message[object], *, delay: int | None = None) -> None:
        if message.kwargs["n"] in self.refuse:
            raise ConnectionError("broker down")
        with self.lock:
            self.enqueued.append((dict(message.kwargs), delay, _REQUEST.get(), threading.get_ident()))

    def close(self) -> None:
        self.closed = True


def _jobs(count: int) -> list[Job]:
    return [Job("outbound", "send_message", kwargs={"n": n}, delay_ms=n or None) for n in range(count)]


def test_a_batch_publishes_every_job_with_its_delay_on_several_threads_in_the_callers_context() -> None:
    broker = _Broker()
    publisher = BrokerJobPublisher(broker)  # type: ignore[arg-type]
    assert isinstance(publisher, BatchJobPublisher)
    token = _REQUEST.set("req-1")
    try:
        errors = publisher.publish_many(_jobs(200))
    finally:
        _REQUEST.reset(token)
    publisher.close()
    assert errors == [None] * 200
    assert sorted(kw["n"] for kw, _, _, _ in broker.enqueued) == list(range(200))
    assert all(delay == (kw["n"] or None) for kw, delay, _, _ in broker.enqueued)
    assert {context for _, _, context, _ in broker.enqueued} == {"req-1"}
    assert threading.get_ident() not in {thread for _, _, _, thread in broker.enqueued}
    assert broker.closed


def test_a_batch_reports_each_refused_job_and_still_attempts_the_others() -> None:
    broker = _Broker(refuse=frozenset({3, 40}))
    publisher = BrokerJobPublisher(broker)  # type: ignore[arg-type]
    errors = publisher.publish_many(_jobs(50))
    publisher.close()
    refused = [n for n, error in enumerate(errors) if error is not None]
    assert refused == [3, 40]
    assert all(isinstance(errors[n], ConnectionError) for n in refused)
    assert len(broker.enqueued) == 48


@pytest.mark.parametrize("count", [1, 5])
def test_a_small_batch_is_published_on_the_callers_thread(count: int) -> None:
    broker = _Broker()
    publisher = BrokerJobPublisher(broker)  # type: ignore[arg-type]
    assert publisher.publish_many(_jobs(count)) == [None] * count
    assert {thread for _, _, _, thread in broker.enqueued} == {threading.get_ident()}
