"""Domain events appended to `event_store` in the transaction of the change they describe, and
webhook changes recorded as they came (`db.repos.inbound.events`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy.engine import Connection

from db.repos.inbound import events as repo
from db.repos.inbound.runner import json_text
from domain.inbox import RECORDED


@dataclass(frozen=True, slots=True)
class Event:
    aggregate_type: str
    aggregate_id: str
    event_type: str
    payload: dict[str, Any]


@dataclass(slots=True)
class EventBuffer:
    """Collects a change's events so they are written in one statement."""

    events: list[Event] = field(default_factory=list)

    def add(self, aggregate_type: str, aggregate_id: UUID | str, event_type: str, **payload: Any) -> None:
        self.events.append(Event(aggregate_type, str(aggregate_id), event_type, payload))

    def flush(self, conn: Connection, organization_id: UUID) -> int:
        if not self.events:
            return 0
        repo.append(
            conn,
            organization_id,
            orjson.dumps(
                [
                    {
                        "aggregate_type": e.aggregate_type,
                        "aggregate_id": e.aggregate_id,
                        "event_type": e.event_type,
                        "payload": e.payload,
                        "ord": i,
                    }
                    for i, e in enumerate(self.events)
                ]
            ).decode(),
        )
        written, self.events = len(self.events), []
        return written


def record_webhook_event(
    conn: Connection,
    organization_id: UUID,
    *,
    event_id: str,
    event_type: str,
    payload: object,
    received_at: float,
    outcome: str = RECORDED,
) -> bool:
    """Whether it is new (False: this exact change was recorded before)."""
    return repo.record_webhook_event(
        conn,
        organization_id,
        event_id=event_id,
        event_type=event_type,
        payload=json_text(payload),
        received_at=received_at,
        outcome=outcome,
    )
