"""Domain events appended to `event_store` in the transaction of the change they describe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Connection

from workers.inbound.params import json_text, run

# The events come as one JSON array of rows (see messages.py), in the order they were added.
_APPEND = """
INSERT INTO event_store (organization_id, aggregate_type, aggregate_id, event_type, payload)
SELECT %(org)s::uuid, e.aggregate_type, e.aggregate_id, e.event_type, e.payload
FROM json_to_recordset(%(events)s::json)
     AS e(aggregate_type text, aggregate_id text, event_type text, payload jsonb, ord int)
ORDER BY e.ord
"""

# Account-level webhooks and change-level errors carry no key of their own: a digest of the change
# is their id, so a redelivered one is recorded once.
_RECORD_WEBHOOK = """
INSERT INTO webhook_events (organization_id, source, event_id, event_type, received_at, processed_at,
                            outcome, payload)
VALUES (%(org)s::uuid, 'whatsapp', %(event_id)s, %(event_type)s, to_timestamp(%(received_at)s::float8),
        now(), %(outcome)s, %(payload)s::jsonb)
ON CONFLICT (source, event_id) DO NOTHING
RETURNING id
"""


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
        run(
            conn,
            _APPEND,
            {
                "org": str(organization_id),
                "events": json_text(
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
                ),
            },
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
    outcome: str = "recorded",
) -> bool:
    """Whether it is new (False: this exact change was recorded before)."""
    row = run(
        conn,
        _RECORD_WEBHOOK,
        {
            "org": str(organization_id),
            "event_id": event_id,
            "event_type": event_type,
            "received_at": received_at,
            "outcome": outcome,
            "payload": json_text(payload),
        },
    ).first()
    return row is not None
