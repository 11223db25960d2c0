"""The send handler's dependencies in one worker process, built on first use from the process's
resources (made at worker boot), never at import."""

from __future__ import annotations

from workers import resources
from workers.inbound.routes import RouteCache
from workers.outbound.handler import SendDeps


def _deps(current: resources.Resources) -> SendDeps:
    graph = current.graph
    return SendDeps(
        engine=current.engine,
        graph=graph.client,
        breakers=graph.breakers,
        pacer=graph.pacer,
        routes=RouteCache(current.engine),
        jobs=current.jobs,
        lease_seconds=graph.options.send_lease_seconds,
        pace_max_wait=graph.options.pace_max_wait_seconds,
    )


deps = resources.per_process(_deps)
