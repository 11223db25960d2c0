"""Domain events appended to `event_store`, and webhook changes kept in `webhook_events`."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.engine import Connection

from db.repos.inbound.runner import run
from domain.inbox import RECORDED, WHATSAPP_SOURCE

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
_RECORD_WEBHOOK = f"""
INSERT INTO webhook_events (organization_id, source, event_id, event_type, received_at, processed_at,
                            outcome, payload)
VALUES (%(org)s::uuid, '{WHATSAPP_SOURCE}', %(event_id)s, %(event_type)s,
        to_timestamp(%(received_at)s::float8), now(), %(outcome)s, %(payload)s::jsonb)
ON CONFLICT (source, event_id) DO NOTHING
RETURNING id
"""  # noqa: S608


def append(conn: Connection, organization_id: UUID, events: str) -> None:
    """`events`: the JSON array of (aggregate_type, aggregate_id, event_type, payload, ord)."""
    run(conn, _APPEND, {"org": str(organization_id), "events": events})


def record_webhook_event(
    conn: Connection,
    organization_id: UUID,
    *,
    event_id: str,
    event_type: str,
    payload: str | None,
    received_at: float,
    outcome: str = RECORDED,
) -> bool:
    """Whether it is new (False: this exact change was recorded before). `payload` is JSON text."""
    row = run(
        conn,
        _RECORD_WEBHOOK,
        {
            "org": str(organization_id),
            "event_id": event_id,
            "event_type": event_type,
            "received_at": received_at,
            "outcome": outcome,
            "payload": payload,
        },
    ).first()
    return row is not None
