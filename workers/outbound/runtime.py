"""The send handler's dependencies in one worker process, built on first use from the process's
resources (made at worker boot), never at import."""

from __future__ import annotations

import threading

from workers import resources
from workers.inbound.routes import RouteCache
from workers.outbound.handler import SendDeps

_lock = threading.Lock()
_built: tuple[resources.Resources, SendDeps] | None = None


def deps() -> SendDeps:
    global _built
    current = resources.current()
    built = _built
    if built is not None and built[0] is current:
        return built[1]
    with _lock:
        if _built is None or _built[0] is not current:
            graph = current.graph
            _built = (
                current,
                SendDeps(
                    engine=current.engine,
                    graph=graph.client,
                    breakers=graph.breakers,
                    pacer=graph.pacer,
                    routes=RouteCache(current.engine),
                    jobs=current.jobs,
                    lease_seconds=graph.options.send_lease_seconds,
                    pace_max_wait=graph.options.pace_max_wait_seconds,
                ),
            )
        return _built[1]
