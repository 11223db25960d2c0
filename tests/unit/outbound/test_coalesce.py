"""Calls made while a batch runs are answered by the next batch, each with its own result."""

from __future__ import annotations

import asyncio
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
