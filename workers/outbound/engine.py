"""The send path of one worker process: an event loop in a thread of its own, hundreds of sends
in flight on it.

Dramatiq's worker threads stay what acknowledges a job: each hands its send to the loop and
waits for the outcome (committed before it returns), so a job is acked only after its outcome is
on record, a transient failure still reaches Dramatiq's retries, and the prefetch stays bounded
by the thread count. A waiting thread costs no CPU; the loop does the HTTP calls and batches the
Redis and Postgres work of the sends in flight (`workers.outbound.coalesce`).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import uvloop

from workers.outbound.handler import SendCommand, SendOutcome, SendPorts, send_one

# Threads for the blocking Redis and Postgres calls of the batches (one batch per kind and
# organization or number at a time); Postgres work also waits for the engine's pooled connections.
_IO_THREADS = 16


class SendEngine:
    def __init__(
        self,
        make_ports: Callable[[], Coroutine[Any, Any, SendPorts]],
        close_ports: Callable[[SendPorts], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self._loop = uvloop.new_event_loop()
        self._loop.set_default_executor(ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="send-io"))
        self._thread = threading.Thread(target=self._loop.run_forever, name="send-loop", daemon=True)
        self._thread.start()
        self._close_ports = close_ports
        self.ports: SendPorts = asyncio.run_coroutine_threadsafe(make_ports(), self._loop).result(timeout=30)

    def send(self, cmd: SendCommand) -> SendOutcome:
        """Run one send on the loop and wait for its outcome (or its exception). The send runs in
        the caller's context (its trace span, for one), as if it had run on the caller's thread."""
        done: Future[SendOutcome] = Future()
        context = contextvars.copy_context()

        def start() -> None:
            task = self._loop.create_task(send_one(cmd, self.ports), context=context)
            task.add_done_callback(lambda t: _settle(done, t))

        self._loop.call_soon_threadsafe(start)
        return done.result()

    def close(self, timeout: float = 10.0) -> None:
        if self._close_ports is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._close_ports(self.ports), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)


def _settle(done: Future[SendOutcome], task: asyncio.Task[SendOutcome]) -> None:
    if task.cancelled():
        done.cancel()
    elif task.exception() is not None:
        done.set_exception(task.exception())
    else:
        done.set_result(task.result())
