"""The send benchmarks' same-run ceiling: an aiohttp client posting text messages straight to the
fake Graph API, with `in_flight` requests outstanding on one event loop (not the fleet's thread
count), no queue, no database, no pacing: the most this machine sends to that fake at its
configured latency. `bench.outbound` and `bench.bulk` print their send rates beside it.

aiohttp rather than httpx: httpx's async pool walks its connections on every request, which at
hundreds in flight makes the client itself the bottleneck (at 2 ms: 345 req/s with 64 in flight,
169 with 512, beside aiohttp's 4,550 with 512). `client="httpx"` measures that one too, for a
comparison; a ceiling the client itself limits is no ceiling of the machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import httpx
import orjson

DEFAULT_IN_FLIGHT = 512


@dataclass(frozen=True, slots=True)
class Ceiling:
    per_s: float
    requests: int
    in_flight: int
    library: str = "aiohttp"

    @property
    def client(self) -> str:
        return f"{self.library}, {self.in_flight} in flight, same fake and latency"


def in_flight_for(rate_per_s: float, latency_ms: float) -> int:
    """Enough requests in flight to keep `rate_per_s` going at `latency_ms` twice over, and never
    fewer than the outbound benchmark's 512."""
    return max(DEFAULT_IN_FLIGHT, int(rate_per_s * latency_ms / 1000 * 2))


def graph_ceiling(
    url: str,
    total: int,
    in_flight: int = DEFAULT_IN_FLIGHT,
    *,
    numbers: int = 1,
    prefix: str = "ceiling",
    library: str = "aiohttp",
) -> Ceiling:
    """Post `total` messages over `numbers` phone number ids (`<prefix>-pn-<n>`); each carries
    `biz_opaque_callback_data` `<prefix>-<i>`, so the fake's log tells them from the fleet's."""
    run = _RUNS[library]
    return Ceiling(asyncio.run(run(url, total, in_flight, numbers, prefix)), total, in_flight, library)


_HEADERS = {"Authorization": "Bearer t", "Content-Type": "application/json"}


def _request(i: int, numbers: int, prefix: str) -> tuple[str, bytes]:
    body = {
        "messaging_product": "whatsapp",
        "to": f"2{i:011d}",
        "type": "text",
        "text": {"body": "x"},
        "biz_opaque_callback_data": f"{prefix}-{i}",
    }
    return f"/v21.0/{prefix}-pn-{i % numbers}/messages", orjson.dumps(body)


async def _timed(total: int, in_flight: int, worker: Callable[[], Awaitable[None]]) -> float:
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return total / (time.monotonic() - started)


async def _run_aiohttp(url: str, total: int, in_flight: int, numbers: int, prefix: str) -> float:
    counter = iter(range(total))
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def worker() -> None:
            for i in counter:
                path, body = _request(i, numbers, prefix)
                for _ in range(3):  # a kept-alive connection the fake closed meanwhile: once more
                    try:
                        async with session.post(path, data=body, headers=_HEADERS) as response:
                            await response.read()
                            response.raise_for_status()
                        break
                    except aiohttp.ServerDisconnectedError:
                        continue

        return await _timed(total, in_flight, worker)


async def _run_httpx(url: str, total: int, in_flight: int, numbers: int, prefix: str) -> float:
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            for i in counter:
                path, body = _request(i, numbers, prefix)
                for _ in range(3):
                    try:
                        response = await client.post(path, content=body, headers=_HEADERS)
                        response.raise_for_status()
                        break
                    except httpx.RemoteProtocolError:
                        continue

        return await _timed(total, in_flight, worker)


_RUNS: dict[str, Callable[[str, int, int, int, str], Awaitable[float]]] = {
    "aiohttp": _run_aiohttp,
    "httpx": _run_httpx,
}
