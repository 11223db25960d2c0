"""Routing a change or a send to its organization, cached in-process for a short time: one cache
for the inbound worker and the send path.

Routing is the one cross-tenant read (SECURITY DEFINER functions, no scope needed). Every delivery
needs it, so an owner, once found, is kept for `ttl` seconds. "Nobody owns this number" is kept
for at most a second: a change that meets it is parked, and a number being onboarded must start
taking its own deliveries at once, not after a stale answer expires.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy.engine import Connection, Engine

from db.tenants import NumberRoute, resolve_phone_number, resolve_waba
from domain.whatsapp import WebhookChange

log = logging.getLogger(__name__)

NEGATIVE_TTL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class AccountRoute:
    """An account-level change (no phone number): routed by its WhatsApp Business Account id."""

    organization_id: UUID


Route = NumberRoute | AccountRoute


class RouteCache:
    def __init__(
        self,
        engine: Engine,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        negative_ttl: float = NEGATIVE_TTL_SECONDS,
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._negative_ttl = min(negative_ttl, NEGATIVE_TTL_SECONDS, ttl)
        self._clock = clock
        self._numbers: dict[str, tuple[float, NumberRoute | None]] = {}
        self._accounts: dict[str, tuple[float, AccountRoute | None]] = {}
        self._lock = threading.Lock()

    def for_change(self, change: WebhookChange) -> Route | None:
        if change.phone_number_id is not None:
            return self.number(change.phone_number_id)
        if change.entry_id:
            return self.account(change.entry_id)
        return None

    def number(self, phone_number_id: str) -> NumberRoute | None:
        cached = self._numbers.get(phone_number_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        with self._engine.connect() as conn:
            return self._look_up_number(conn, phone_number_id)

    def account(self, waba_id: str) -> AccountRoute | None:
        cached = self._accounts.get(waba_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        with self._engine.connect() as conn:
            return self._look_up_account(conn, waba_id)

    def refresh(self, change: WebhookChange) -> Route | None:
        """The route read now, whatever is cached (and cached in its place)."""
        with self._engine.connect() as conn:
            if change.phone_number_id is not None:
                return self._look_up_number(conn, change.phone_number_id)
            if change.entry_id:
                return self._look_up_account(conn, change.entry_id)
        return None

    def forget(self) -> None:
        with self._lock:
            self._numbers.clear()
            self._accounts.clear()

    def _look_up_number(self, conn: Connection, phone_number_id: str) -> NumberRoute | None:
        now = self._clock()
        route = resolve_phone_number(conn, phone_number_id)
        with self._lock:
            self._numbers[phone_number_id] = (now + self._expiry(route), route)
        return route

    def _look_up_account(self, conn: Connection, waba_id: str) -> AccountRoute | None:
        now = self._clock()
        found = resolve_waba(conn, waba_id)
        route = AccountRoute(found[0]) if len(found) == 1 else None
        if len(found) > 1:
            log.warning("account owned by several organizations", extra={"waba_id": waba_id})
        with self._lock:
            self._accounts[waba_id] = (now + self._expiry(route), route)
        return route

    def _expiry(self, route: Route | None) -> float:
        return self._ttl if route is not None else self._negative_ttl
