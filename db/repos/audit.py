"""The audit trail: domain events appended to `event_store`, never rewritten.

Runtime roles may only INSERT into the table (migration 0008 revokes UPDATE, DELETE and TRUNCATE,
and a trigger refuses them to anyone else), so what is written here stays as written. Every
function appends inside the caller's unit of work, so the event commits with the change it
describes or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.tables import event_store

MESSAGE: Final = "message"
API_KEY: Final = "api_key"
WHATSAPP_NUMBER: Final = "whatsapp_number"

# Send outcomes: `message.<status>` for sent, failed, ambiguous (and queued again, as `released`).
SEND_OUTCOMES: Final = frozenset({"sent", "failed", "ambiguous", "released"})


def append(
    conn: Connection,
    organization_id: UUID,
    aggregate_type: str,
    aggregate_id: UUID | str,
    event_type: str,
    payload: Mapping[str, Any],
) -> None:
    conn.execute(
        sa.insert(event_store).values(
            organization_id=organization_id,
            aggregate_type=aggregate_type,
            aggregate_id=str(aggregate_id),
            event_type=event_type,
            payload=dict(payload),
        )
    )


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """One send attempt's outcome, as `message.<outcome>` records it."""

    message_id: UUID
    outcome: str
    attempt: int | None
    wamid: str | None = None
    error_code: int | None = None
    error_title: str | None = None

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"attempt": self.attempt}
        if self.wamid is not None:
            payload["wamid"] = self.wamid
        if self.error_code is not None or self.error_title is not None:
            payload["error_code"] = self.error_code
            payload["error_title"] = self.error_title
        return payload


def record_send_outcome(
    conn: Connection,
    organization_id: UUID,
    message_id: UUID,
    outcome: str,
    *,
    attempt: int | None,
    wamid: str | None = None,
    error_code: int | None = None,
    error_title: str | None = None,
) -> None:
    """`message.sent|failed|ambiguous|released` for one send attempt, in the transaction that
    records that outcome on the message row."""
    record_send_outcomes(
        conn, organization_id, [SendOutcome(message_id, outcome, attempt, wamid, error_code, error_title)]
    )


# The outcomes as one JSON array of rows: a statement of one shape whatever the batch's size,
# which psycopg prepares once per connection (a multi-row VALUES is compiled again for every size).
_APPEND_SEND_OUTCOMES = """
INSERT INTO event_store (organization_id, aggregate_type, aggregate_id, event_type, payload)
SELECT %(org)s::uuid, 'message', o.aggregate_id, o.event_type, o.payload
FROM json_to_recordset(%(outcomes)s::json) AS o(aggregate_id text, event_type text, payload jsonb, ord int)
ORDER BY o.ord
"""


def record_send_outcomes(conn: Connection, organization_id: UUID, outcomes: Sequence[SendOutcome]) -> None:
    """The outcomes of one organization's batch in one multi-row INSERT: a batch of sends costs one
    statement of audit, not one per send."""
    for o in outcomes:
        if o.outcome not in SEND_OUTCOMES:
            raise ValueError(f"unknown send outcome {o.outcome!r}; one of {sorted(SEND_OUTCOMES)}")
    if not outcomes:
        return
    rows = [
        {"aggregate_id": str(o.message_id), "event_type": f"message.{o.outcome}", "payload": o.payload(),
         "ord": i}
        for i, o in enumerate(outcomes)
    ]  # fmt: skip
    conn.exec_driver_sql(
        _APPEND_SEND_OUTCOMES, {"org": str(organization_id), "outcomes": orjson.dumps(rows).decode()}
    )
