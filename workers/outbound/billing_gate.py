"""The plan check of the send worker, asked once every few seconds per organization.

Billing decides (`db.repos.billing.check_send_allowed`); this keeps a "yes" for `ttl` seconds so
the check costs no query per send at a thousand sends a second. A "no" is never kept: the message
is failed with the refusal's code, and the next message asks again. Each message is counted
against the month's usage once, on its first attempt, by the statement that claims it
(`db.repos.outbound.claim_queued`); a quota can therefore be passed by at most `ttl` seconds' worth
of sends (the API checks it exactly when it accepts a message).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from uuid import UUID

from sqlalchemy.engine import Connection

from db.repos.billing import check_send_allowed
from domain.billing.policy import SendDecision


class BillingGate:
    def __init__(self, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._allowed_until: dict[UUID, float] = {}
        self._lock = threading.Lock()

    def allowed_recently(self, organization_id: UUID) -> bool:
        """A "yes" is still kept: the send may go ahead without asking billing."""
        return self._allowed_until.get(organization_id, 0.0) > self._clock()

    def check(self, conn: Connection, organization_id: UUID) -> SendDecision:
        if self.allowed_recently(organization_id):
            return SendDecision(True)
        decision = check_send_allowed(conn, organization_id, 1)
        with self._lock:
            if decision.allowed:
                self._allowed_until[organization_id] = self._clock() + self._ttl
            else:
                self._allowed_until.pop(organization_id, None)
        return decision
