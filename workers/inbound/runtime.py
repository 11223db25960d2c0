"""What the inbound and media actors share in one worker process, built on first use from the
process's resources (made at worker boot), never at import."""

from __future__ import annotations

from services.number_routes import RouteCache
from workers import resources
from workers.graph.client import GraphClient
from workers.inbound.delivery import Deps
from workers.inbound.realtime import RedisRealtime
from workers.storage.local import LocalMediaStorage


def _deps(current: resources.Resources) -> Deps:
    return Deps(
        engine=current.engine,
        jobs=current.jobs,
        routes=RouteCache(current.engine),
        realtime=RedisRealtime(current.redis),
    )


def _storage(current: resources.Resources) -> LocalMediaStorage:
    return LocalMediaStorage(current.settings.media_dir)


deps = resources.per_process(_deps)
storage = resources.per_process(_storage)


def graph() -> GraphClient:
    """The process's Graph API client, made once at worker boot (shared with the send path)."""
    return resources.current().graph.client
