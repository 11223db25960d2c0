"""Liveness, readiness and the metrics exposition.

/healthz says the process answers; /readyz says whether it can do its job now (broker channel open,
Postgres and Redis answering), naming each dependency, so an orchestrator stops routing webhooks to
an instance that would only answer 503.

/readyz answers from a cached probe: the dependencies are probed at most once per `min_interval`
(1 s) however often, and by however many callers at once, it is asked (they share one probe in
flight), so polling it cannot load Postgres with connections. Each dependency is "ok", "down" or
"timeout": an exception's text (hosts, users, driver messages) goes to the log, never to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ingress.metrics import Metrics
from ingress.publisher import Publisher

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]


class Readiness:
    def __init__(
        self,
        probes: Mapping[str, Probe],
        timeout: float,
        *,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probes = dict(probes)
        self._timeout = timeout
        self._min_interval = min_interval
        self._clock = clock
        self._started_at: float | None = None
        self._latest: asyncio.Future[dict[str, str]] | None = None
        self.probes_run = 0

    def set_probes(self, probes: Mapping[str, Probe]) -> None:
        """Probes that need resources made in the lifespan are given once those exist."""
        self._probes = dict(probes)
        self._latest = None

    async def check(self) -> dict[str, str]:
        now = self._clock()
        fresh = self._started_at is not None and now - self._started_at < self._min_interval
        if self._latest is None or not fresh:
            self._started_at = now
            self._latest = asyncio.ensure_future(self._probe_all())
        # Shielded: a caller that disconnects must not cancel the probe the others wait for.
        return dict(await asyncio.shield(self._latest))

    async def _probe_all(self) -> dict[str, str]:
        self.probes_run += 1
        results = await asyncio.gather(*(self._run(name, probe) for name, probe in self._probes.items()))
        return dict(zip(self._probes, results, strict=True))

    async def _run(self, name: str, probe: Probe) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                await probe()
        except TimeoutError:
            log.warning("readiness probe timed out", extra={"dependency": name, "timeout": self._timeout})
            return "timeout"
        except Exception:
            log.warning("readiness probe failed", extra={"dependency": name}, exc_info=True)
            return "down"
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


def metrics_endpoint(metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    async def exposition(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return exposition
