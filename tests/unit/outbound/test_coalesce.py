"""Calls made while a batch runs are answered by the next batch, each with its own result; a
bounded number of batches run side by side."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from workers.outbound.coalesce import Coalescer


def test_concurrent_calls_share_batches_and_get_their_own_answers() -> None:
    batches: list[list[int]] = []

    def run(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    async def main() -> list[int | BaseException]:
        coalescer: Coalescer[int, int] = Coalescer(run)
        return list(await asyncio.gather(*(coalescer.submit(i) for i in range(50)), return_exceptions=True))

    answers = asyncio.run(main())
    assert [a for a in answers if not isinstance(a, BaseException)] == [i * 10 for i in range(0, 50, 2)]
    assert all(isinstance(answers[i], ValueError) for i in range(1, 50, 2))
    assert len(batches) < 50 and sorted(i for b in batches for i in b) == list(range(50))


def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    def run(items: Sequence[int]) -> list[int]:
        if 0 in items:
            raise ConnectionError("down")
        return list(items)

    async def main() -> int:
        coalescer: Coalescer[int, int] = Coalescer(run)
        with pytest.raises(ConnectionError):
            await coalescer.submit(0)
        return await coalescer.submit(7)

    assert asyncio.run(main()) == 7


def test_at_most_concurrency_batches_run_at_once_and_the_calls_waiting_meanwhile_batch_together() -> None:
    batches: list[list[int]] = []
    running = 0
    most = 0
    lock = threading.Lock()

    def run(items: Sequence[int]) -> list[int | BaseException]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)  # long enough for the next calls to arrive meanwhile
        with lock:
            batches.append(list(items))
            running -= 1
        return [i * 2 for i in items]

    async def main() -> list[int]:
        coalescer: Coalescer[int, int] = Coalescer(run, concurrency=2)

        async def call(i: int) -> int:
            await asyncio.sleep(0.002 * i)  # arriving one after another, not all at once
            return await coalescer.submit(i)

        return list(await asyncio.gather(*(call(i) for i in range(40))))

    assert asyncio.run(main()) == [i * 2 for i in range(40)]
    assert most == 2  # never more than `concurrency` batches at once, and more than one
    assert sorted(i for batch in batches for i in batch) == list(range(40))
    assert max(len(batch) for batch in batches) > 1  # the calls made while both ran shared a batch


def test_concurrency_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(lambda items: list(items), concurrency=0)
