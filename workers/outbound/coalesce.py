"""Many concurrent callers, one round trip: calls made while a batch is running form the next.

A send needs a few small round trips (a pacing token, the breakers' state, the claim, the wamid).
At hundreds in flight per process, paying each once per send would be most of the CPU of a send,
so each kind is gathered here and run for the whole batch, in a worker thread (the blocking
Redis and Postgres clients), while the event loop keeps the HTTP calls moving. No timer: a lone
call runs at once, and the batches grow with the load by themselves.

With `concurrency` above one, that many batches may run at once (each holds a worker thread and,
for Postgres, a pooled connection): a call waits for a batch before it only when every slot is
busy, so a slow round trip does not hold the others' calls, and under load the batches still grow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """`await submit(item)` → `run(batch)[i]` for that item. `run` answers every item of its
    batch, in order, with a result or an exception (raised to that caller alone); an exception
    raised by `run` itself goes to every caller of the batch. Use from one event loop; at most
    `concurrency` batches run at once."""

    def __init__(
        self,
        run: Callable[[Sequence[Item]], Sequence[Result | BaseException]],
        max_batch: int = 256,
        concurrency: int = 1,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._draining = 0
        # The running drains, held so none is collected mid-batch (the loop keeps weak references).
        self._drains: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if self._draining < self._concurrency:
            self._draining += 1
            task = loop.create_task(self._drain())
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._one_batch()
        finally:
            self._draining -= 1

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
