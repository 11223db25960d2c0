"""The send engine of one worker process, built on first use from the process's resources (made
at worker boot), never at import."""

from __future__ import annotations

from collections.abc import Callable

from services import fleet_counters
from services.number_routes import RouteCache
from workers import resources
from workers.graph.async_client import AsyncGraphSender
from workers.outbound.adapters import FleetBreakers, FleetPacer
from workers.outbound.engine import SendEngine
from workers.outbound.handler import SendPorts
from workers.outbound.limits import InFlightLimits
from workers.outbound.store import CatchUp, PostgresSendStore


def engine_for(catch_up: CatchUp) -> Callable[[], SendEngine]:
    """The getter of this process's engine; `catch_up` applies what arrived for a wamid early."""

    def build(current: resources.Resources) -> SendEngine:
        options = current.graph.options
        settings = current.settings

        async def make() -> SendPorts:
            sender = AsyncGraphSender(
                settings.graph_api_url, settings.graph_api_version, max_connections=options.in_flight
            )
            await sender.start()
            return SendPorts(
                graph=sender,
                breakers=FleetBreakers(current.graph.breakers),
                pacer=FleetPacer(current.graph.pacer),
                routes=RouteCache(current.engine),
                store=PostgresSendStore(
                    current.engine,
                    current.jobs,
                    catch_up,
                    lease_seconds=options.send_lease_seconds,
                    batch_concurrency=options.db_batches,
                ),
                limits=InFlightLimits(options.in_flight, options.in_flight_per_number),
                pace_max_wait=options.pace_max_wait_seconds,
                counters=fleet_counters.shared(settings.redis_url, settings.fleet_counters_namespace),
            )

        async def close(ports: SendPorts) -> None:
            if isinstance(ports.graph, AsyncGraphSender):
                await ports.graph.close()

        engine = SendEngine(make, close)
        current.on_close(engine.close)
        return engine

    return resources.per_process(build)
