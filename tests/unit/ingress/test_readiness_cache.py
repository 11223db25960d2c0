"""The readiness cache: one probe per second at most, shared by concurrent callers."""

from __future__ import annotations

import asyncio

from ingress.health import Readiness


def test_the_cache_lasts_one_second_and_callers_share_a_probe() -> None:
    now = [100.0]
    calls = []

    async def probe() -> None:
        calls.append(now[0])
        await asyncio.sleep(0)

    readiness = Readiness({"x": probe}, timeout=1.0, clock=lambda: now[0])

    async def scenario() -> None:
        results = await asyncio.gather(*(readiness.check() for _ in range(25)))
        assert all(r == {"x": "ok"} for r in results)
        now[0] += 0.99
        await readiness.check()
        assert len(calls) == 1
        now[0] += 0.01
        await readiness.check()
        assert calls == [100.0, 101.0]

    asyncio.run(scenario())
