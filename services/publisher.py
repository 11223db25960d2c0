"""Publishing jobs through the Dramatiq broker (confirmed, persistent)."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import dramatiq

from domain.ports import Job

# A confirmed publish waits for RabbitMQ's ack (a round trip and, for a persistent message, its
# write), so one thread publishing a broadcast chunk's 500 jobs spent most of a second waiting,
# the chunk's sends trickling out behind it. Each thread has its own connection and channel
# (Dramatiq's are per thread), so this many confirms are in flight at once.
PUBLISH_THREADS = 8
# Fewer jobs than this are published on the caller's thread: a handoff would cost more than it saves.
_PARALLEL_FROM = 16


class BrokerJobPublisher:
    """Enqueues a `Job` by queue and actor name, so publishers need not import actor modules.

    Publish-only, shared by the workers and the ingress API (with a confirm-mode RabbitmqBroker it
    returns once RabbitMQ has the message).
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def publish(self, job: Job) -> None:
        message: dramatiq.Message[object] = dramatiq.Message(
            queue_name=job.queue,
            actor_name=job.actor,
            args=tuple(job.args),
            kwargs=dict(job.kwargs),
            options=dict(job.options),
        )
        if job.message_id:
            message = message.copy(message_id=job.message_id)
        self._broker.enqueue(message, delay=job.delay_ms)

    def publish_many(self, jobs: Sequence[Job]) -> list[BaseException | None]:
        """Each job published as by `publish` (confirmed one by one), several at once; in no
        particular order between them (each job stands alone). Each runs in a copy of the
        caller's context, so the trace context still travels with it."""
        if len(jobs) < _PARALLEL_FROM:
            return [self._attempt(job) for job in jobs]
        contexts = [contextvars.copy_context() for _ in jobs]
        return list(self._threads().map(lambda c, j: c.run(self._attempt, j), contexts, jobs))

    def _attempt(self, job: Job) -> BaseException | None:
        try:
            self.publish(job)
        except Exception as exc:
            return exc
        return None

    def _threads(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="publish")
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self._broker.close()
