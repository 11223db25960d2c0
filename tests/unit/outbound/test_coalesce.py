"""Calls made while a batch runs are answered by the next batch, each with its own result; with
keys, a batch holds one key's calls and the keys' batches run side by side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from workers.outbound.coalesce import Coalescer, KeyedCoalescer


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


def test_keyed_batches_hold_one_key_each_and_run_side_by_side() -> None:
    batches: list[tuple[str, list[int]]] = []
    running = 0
    most = 0

    def run(key: str, items: Sequence[int]) -> list[int | BaseException]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        time.sleep(0.02)  # long enough for the other keys' batches to start meanwhile
        batches.append((key, list(items)))
        running -= 1
        return [i + (1000 if key == "b" else 0) for i in items]

    async def main() -> tuple[list[int], int]:
        coalescer: KeyedCoalescer[str, int, int] = KeyedCoalescer(run, concurrency=2)
        keys = ["a", "b", "c"]
        answers = await asyncio.gather(*(coalescer.submit(keys[i % 3], i) for i in range(30)))
        return list(answers), len(coalescer._queues)

    answers, queues_left = asyncio.run(main())
    assert answers == [i + (1000 if i % 3 == 1 else 0) for i in range(30)]
    assert all(len({i % 3 for i in items}) == 1 for _, items in batches)
    assert most == 2  # never more than `concurrency` batches at once, and more than one
    assert queues_left == 0  # an idle key's queue is dropped
