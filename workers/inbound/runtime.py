"""What the inbound and media actors share in one worker process, built on first use from the
process's resources (made at worker boot), never at import."""

from __future__ import annotations

import threading

from workers import resources
from workers.graph.client import GraphClient
from workers.inbound.delivery import Deps
from workers.inbound.realtime import RedisRealtime
from workers.inbound.routes import RouteCache
from workers.storage.local import LocalMediaStorage

_lock = threading.Lock()
_built: tuple[resources.Resources, Deps] | None = None
_storage: LocalMediaStorage | None = None


def deps() -> Deps:
    global _built
    current = resources.current()
    built = _built
    if built is not None and built[0] is current:
        return built[1]
    with _lock:
        if _built is None or _built[0] is not current:
            made = Deps(
                engine=current.engine,
                jobs=current.jobs,
                routes=RouteCache(current.engine),
                realtime=RedisRealtime(current.redis),
            )
            _built = (current, made)
        return _built[1]


def graph() -> GraphClient:
    """The process's Graph API client, made once at worker boot (shared with the send path)."""
    return resources.current().graph.client


def storage() -> LocalMediaStorage:
    global _storage
    with _lock:
        if _storage is None:
            _storage = LocalMediaStorage(resources.current().settings.media_dir)
        return _storage


def reset() -> None:
    """Forget everything built (tests that swap resources or settings)."""
    global _built, _storage
    with _lock:
        _built = _storage = None
