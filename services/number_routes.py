"""A phone number's route (its organization, access token and pacing tier), cached in-process.

Routing is the one cross-tenant read (`db.tenants`); the send path asks it for every message, so
answers are kept for `ttl` seconds. A "nobody owns this number" is kept for at most a second, so
a number added to a tenant is usable at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine

from db.tenants import NumberRoute, resolve_phone_number

NEGATIVE_TTL = 1.0


class NumberRouteCache:
    def __init__(
        self, engine: Engine, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._clock = clock
        self._numbers: dict[str, tuple[float, NumberRoute | None]] = {}
        self._lock = threading.Lock()

    def number(self, phone_number_id: str) -> NumberRoute | None:
        cached = self._numbers.get(phone_number_id)
        now = self._clock()
        if cached is not None and cached[0] > now:
            return cached[1]
        with self._engine.connect() as conn:
            route = resolve_phone_number(conn, phone_number_id)
        ttl = self._ttl if route is not None else min(self._ttl, NEGATIVE_TTL)
        with self._lock:
            self._numbers[phone_number_id] = (now + ttl, route)
        return route
