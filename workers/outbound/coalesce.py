"""Many concurrent callers, one round trip: calls made while a batch is running form the next.

A send needs a few small round trips (a pacing token, the breakers' state, the claim, the wamid).
At hundreds in flight per process, paying each once per send would be most of the CPU of a send,
so each kind is gathered here and run for the whole batch, in a worker thread (the blocking
Redis and Postgres clients), while the event loop keeps the HTTP calls moving. No timer: a lone
call runs at once, and the batches grow with the load by themselves.

`KeyedCoalescer` keeps one such queue per key (an organization): the batches of different keys
run side by side, so one organization's round trips never wait behind another's. One queue for
every key would run them one after another, a batch's latency growing with the number of
organizations in it while the process's sends wait (the fleet's throughput then set by Postgres
latency, not by its CPU).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
Key = TypeVar("Key", bound=Hashable)


class Coalescer(Generic[Item, Result]):
    """`await submit(item)` → `run(batch)[i]` for that item. `run` answers every item of its
    batch, in order, with a result or an exception (raised to that caller alone); an exception
    raised by `run` itself goes to every caller of the batch. Use from one event loop. With
    `slots`, each batch first takes one (several coalescers sharing a bound on batches at once)."""

    def __init__(
        self,
        run: Callable[[Sequence[Item]], Sequence[Result | BaseException]],
        max_batch: int = 256,
        slots: asyncio.Semaphore | None = None,
    ):
        self._run = run
        self._max_batch = max_batch
        self._slots = slots
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._draining = False

    @property
    def idle(self) -> bool:
        return not self._draining and not self._pending

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                if self._slots is None:
                    await self._one_batch()
                else:
                    async with self._slots:
                        await self._one_batch()
        finally:
            self._draining = False

    async def _one_batch(self) -> None:
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        try:
            results = await asyncio.to_thread(self._run, [item for item, _ in batch])
        except BaseException as exc:  # every caller of the batch hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


class KeyedCoalescer(Generic[Key, Item, Result]):
    """`await submit(key, item)` → `run(key, batch)[i]`: a `Coalescer` per key, at most
    `concurrency` batches of all keys running at once (each holds a worker thread and, for
    Postgres, a pooled connection). A key's queue is dropped once it is idle."""

    def __init__(
        self,
        run: Callable[[Key, Sequence[Item]], Sequence[Result | BaseException]],
        max_batch: int = 256,
        concurrency: int = 4,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._queues: dict[Key, Coalescer[Item, Result]] = {}

    async def submit(self, key: Key, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a semaphore and futures belong to one loop
            self._loop, self._slots, self._queues = loop, asyncio.Semaphore(self._concurrency), {}
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = Coalescer(
                lambda items: self._run(key, items), self._max_batch, self._slots
            )
        try:
            return await queue.submit(item)
        finally:
            if queue.idle and self._queues.get(key) is queue:
                del self._queues[key]
