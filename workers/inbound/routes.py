"""Routing a change to its organization, cached in-process for a short time.

Routing is the one cross-tenant read (SECURITY DEFINER functions, no scope needed). Every delivery
needs it, so answers, including "nobody owns this number", are kept for a few seconds: a number
added to a tenant is picked up within `ttl` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tenants import NumberRoute, resolve_phone_number
from domain.whatsapp import WebhookChange

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AccountRoute:
    """An account-level change (no phone number): routed by its WhatsApp Business Account id."""

    organization_id: UUID


class RouteCache:
    def __init__(
        self, engine: Engine, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._clock = clock
        self._numbers: dict[str, tuple[float, NumberRoute | None]] = {}
        self._accounts: dict[str, tuple[float, AccountRoute | None]] = {}
        self._lock = threading.Lock()

    def for_change(self, change: WebhookChange) -> NumberRoute | AccountRoute | None:
        if change.phone_number_id is not None:
            return self.number(change.phone_number_id)
        if change.entry_id:
            return self.account(change.entry_id)
        return None

    def number(self, phone_number_id: str) -> NumberRoute | None:
        cached = self._numbers.get(phone_number_id)
        now = self._clock()
        if cached is not None and cached[0] > now:
            return cached[1]
        with self._engine.connect() as conn:
            route = resolve_phone_number(conn, phone_number_id)
        with self._lock:
            self._numbers[phone_number_id] = (now + self._ttl, route)
        return route

    def account(self, waba_id: str) -> AccountRoute | None:
        cached = self._accounts.get(waba_id)
        now = self._clock()
        if cached is not None and cached[0] > now:
            return cached[1]
        with self._engine.connect() as conn:
            orgs = conn.execute(sa.text("SELECT organization_id FROM app_resolve_waba(:w)"), {"w": waba_id})
            found = [row.organization_id for row in orgs]
        route = AccountRoute(found[0]) if len(found) == 1 else None
        if len(found) > 1:
            log.warning("account owned by several organizations", extra={"waba_id": waba_id})
        with self._lock:
            self._accounts[waba_id] = (now + self._ttl, route)
        return route

    def forget(self) -> None:
        with self._lock:
            self._numbers.clear()
            self._accounts.clear()
