"""A process never has more sends in flight than its limits, in all or for one number."""

from __future__ import annotations

import asyncio

from workers.outbound.limits import InFlightLimits


def test_in_flight_sends_stay_within_the_total_and_per_number_limits() -> None:
    limits = InFlightLimits(total=6, per_number=4)
    now = {"all": 0, "a": 0, "b": 0}
    peak = {"all": 0, "a": 0, "b": 0}

    async def send(number: str) -> None:
        async with limits.slot(number):
            now["all"] += 1
            now[number] += 1
            peak["all"], peak[number] = max(peak["all"], now["all"]), max(peak[number], now[number])
            await asyncio.sleep(0.01)
            now["all"] -= 1
            now[number] -= 1

    async def main() -> None:
        await asyncio.gather(*(send("a" if i % 3 else "b") for i in range(60)))

    asyncio.run(main())
    assert peak["all"] == 6 and peak["a"] == 4 and peak["b"] <= 4
