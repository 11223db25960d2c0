"""Per-process resources (engine, Redis, publishers), made once at worker boot, never at import."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dramatiq
import redis
from dramatiq.middleware import Middleware
from sqlalchemy.engine import Engine

from config import Settings, get_settings
from db.engine import create_db_engine
from services.publisher import BrokerJobPublisher
from workers.graph import GraphClient
from workers.outbound.options import GraphAdapters


@dataclass
class Resources:
    settings: Settings
    engine: Engine
    redis: redis.Redis
    jobs: BrokerJobPublisher
    graph: GraphAdapters
    closers: list[Callable[[], None]] = field(default_factory=list)
    # Set when the process is stopping: a long task (a template sync over every organization) ends
    # at its next step rather than run on into the exit.
    stopping: threading.Event = field(default_factory=threading.Event)

    def on_close(self, close: Callable[[], None]) -> None:
        """Run `close` first when the resources close (what was built over them)."""
        self.closers.append(close)

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.graph.close()
        self.engine.dispose()
        self.redis.close()


_current: Resources | None = None


def build(broker: dramatiq.Broker, settings: Settings | None = None) -> Resources:
    settings = settings or get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, health_check_interval=30)
    return Resources(
        settings=settings,
        engine=create_db_engine(settings, pre_ping=False),
        redis=client,
        jobs=BrokerJobPublisher(broker),
        graph=GraphAdapters(GraphClient.from_settings(settings), client),
    )


def current() -> Resources:
    """The resources of this worker process; actors call this at run time."""
    if _current is None:
        raise RuntimeError("worker resources are not initialised (is ResourcesMiddleware installed?)")
    return _current


T = TypeVar("T")


def per_process(make: Callable[[Resources], T]) -> Callable[[], T]:
    """A getter for what `make` builds from this process's resources: built on first use, and
    again only when the resources are replaced (tests install their own)."""
    lock = threading.Lock()
    made: list[tuple[Resources, T]] = []

    def get() -> T:
        resources = current()
        if made and made[0][0] is resources:
            return made[0][1]
        with lock:
            if not made or made[0][0] is not resources:
                made[:] = [(resources, make(resources))]
            return made[0][1]

    return get


def install(resources: Resources | None) -> None:
    """Set (or clear) the process's resources; tests call this for in-process workers."""
    global _current
    _current = resources


class ResourcesMiddleware(Middleware):
    """Builds the resources when a worker process boots and closes them when it shuts down."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if _current is None:
            install(build(broker))

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        global _current
        if _current is not None:
            _current.close()
            _current = None
