"""Open-loop load at a fixed rate over raw HTTP/1.1 keep-alive connections.

Each request has a scheduled send time; its latency is measured from that time, so a stalled server
is charged for the requests it delayed (no coordinated omission).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class PacedResult:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    late_starts: int = 0


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def run_paced(
    host: str, port: int, requests: list[bytes], rate: float, duration: float, connections: int = 64
) -> PacedResult:
    result = PacedResult()
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    total = int(rate * duration)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks = []

    async def one(index: int, scheduled: float) -> None:
        connection = await pool.get()
        try:
            status = await _exchange(*connection, requests[index % len(requests)])
        except (OSError, asyncio.IncompleteReadError):
            result.errors += 1
            connection = await asyncio.open_connection(host, port)
        else:
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.latencies.append(loop.time() - scheduled)
        pool.put_nowait(connection)

    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            result.late_starts += 1
        tasks.append(asyncio.create_task(one(index, scheduled)))
        result.sent += 1
    await asyncio.gather(*tasks)
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
