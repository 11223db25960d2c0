"""The send benchmarks' same-run ceiling: an aiohttp client posting text messages straight to the
fake Graph API, with `in_flight` requests outstanding on one event loop (not the fleet's thread
count), no queue, no database, no pacing: the most this machine sends to that fake at its
configured latency. `bench.outbound` and `bench.bulk` print their send rates beside it.

aiohttp rather than httpx: httpx's async pool walks its connections on every request, which at
hundreds in flight made the client itself the bottleneck (70 req/s with 100 in flight against a
fake that answers 1,000/s).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import orjson

DEFAULT_IN_FLIGHT = 512


@dataclass(frozen=True, slots=True)
class Ceiling:
    per_s: float
    requests: int
    in_flight: int

    @property
    def client(self) -> str:
        return f"aiohttp, {self.in_flight} in flight, same fake and latency"


def in_flight_for(rate_per_s: float, latency_ms: float) -> int:
    """Enough requests in flight to keep `rate_per_s` going at `latency_ms` twice over, and never
    fewer than the outbound benchmark's 512."""
    return max(DEFAULT_IN_FLIGHT, int(rate_per_s * latency_ms / 1000 * 2))


def graph_ceiling(
    url: str, total: int, in_flight: int = DEFAULT_IN_FLIGHT, *, numbers: int = 1, prefix: str = "ceiling"
) -> Ceiling:
    """Post `total` messages over `numbers` phone number ids (`<prefix>-pn-<n>`); each carries
    `biz_opaque_callback_data` `<prefix>-<i>`, so the fake's log tells them from the fleet's."""
    return Ceiling(asyncio.run(_run(url, total, in_flight, numbers, prefix)), total, in_flight)


async def _run(url: str, total: int, in_flight: int, numbers: int, prefix: str) -> float:
    counter = iter(range(total))
    headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def worker() -> None:
            for i in counter:
                body = {
                    "messaging_product": "whatsapp",
                    "to": f"2{i:011d}",
                    "type": "text",
                    "text": {"body": "x"},
                    "biz_opaque_callback_data": f"{prefix}-{i}",
                }
                path = f"/v21.0/{prefix}-pn-{i % numbers}/messages"
                for _ in range(3):  # a kept-alive connection the fake closed meanwhile: once more
                    try:
                        async with session.post(path, data=orjson.dumps(body), headers=headers) as response:
                            await response.read()
                            response.raise_for_status()
                        break
                    except aiohttp.ServerDisconnectedError:
                        continue

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return total / (time.monotonic() - started)
