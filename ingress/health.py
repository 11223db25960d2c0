"""Liveness and readiness (metrics are served on an internal port: see ingress/run.py).

/healthz says the process answers; /readyz says whether it can do its job now (broker channel open,
Postgres and Redis answering), naming each dependency, so an orchestrator stops routing webhooks to
an instance that would only answer 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import psycopg
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ingress.publisher import Publisher

Probe = Callable[[], Awaitable[None]]


class Readiness:
    def __init__(self, probes: Mapping[str, Probe], timeout: float) -> None:
        self._probes = dict(probes)
        self._timeout = timeout

    def set_probes(self, probes: Mapping[str, Probe]) -> None:
        """Probes that need resources made in the lifespan are given once those exist."""
        self._probes = dict(probes)

    async def check(self) -> dict[str, str]:
        results = await asyncio.gather(*(self._run(probe) for probe in self._probes.values()))
        return dict(zip(self._probes, results, strict=True))

    async def _run(self, probe: Probe) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                await probe()
        except TimeoutError:
            return f"down: no answer within {self._timeout}s"
        except Exception as exc:
            return f"down: {type(exc).__name__}: {str(exc)[:200]}"
        return "ok"


def rabbitmq_probe(publisher: Publisher) -> Probe:
    async def probe() -> None:
        if not publisher.is_ready():
            raise ConnectionError("no open channel to rabbitmq")

    return probe


def postgres_probe(conninfo: str, timeout: float) -> Probe:
    # A fresh connection per probe: readiness is polled every few seconds, and a pool kept only for
    # it would hide a database that stopped accepting new connections.
    async def probe() -> None:
        async with await psycopg.AsyncConnection.connect(
            conninfo, connect_timeout=max(1, int(timeout)), autocommit=True
        ) as connection:
            await connection.execute("SELECT 1")

    return probe


def redis_probe(client: Redis) -> Probe:
    async def probe() -> None:
        await client.ping()

    return probe


def libpq_url(sqlalchemy_url: str) -> str:
    scheme, sep, rest = sqlalchemy_url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readyz_endpoint(readiness: Readiness) -> Callable[[Request], Awaitable[Response]]:
    async def readyz(request: Request) -> Response:
        checks = await readiness.check()
        failing = sorted(name for name, state in checks.items() if state != "ok")
        if failing:
            return JSONResponse({"status": "unready", "failing": failing, "checks": checks}, status_code=503)
        return JSONResponse({"status": "ready", "checks": checks})

    return readyz
