"""How many sends one process has in flight (claimed and calling Meta), in all and per number.

In flight ≈ rate times latency: 1,000 sends/s at 250 ms is about 250 across the fleet. The total
bounds the process's memory and connections; the per-number limit keeps one busy number from
taking every slot of a process that also serves others.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class InFlightLimits:
    def __init__(self, total: int = 512, per_number: int = 512) -> None:
        if total < 1 or per_number < 1:
            raise ValueError("in-flight limits must be at least 1")
        self.total = total
        self.per_number = per_number
        self._all: asyncio.Semaphore | None = None
        self._numbers: dict[str, asyncio.Semaphore] = {}

    @asynccontextmanager
    async def slot(self, phone_number_id: str) -> AsyncIterator[None]:
        # Made on first use, on the loop that uses them.
        if self._all is None:
            self._all = asyncio.Semaphore(self.total)
        number = self._numbers.get(phone_number_id)
        if number is None:
            number = self._numbers[phone_number_id] = asyncio.Semaphore(self.per_number)
        async with number, self._all:
            yield
