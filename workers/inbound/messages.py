"""Storing one customer's new messages and bumping their conversation, in one statement.

It runs after the contact row is locked (see `contacts`), so its snapshot already sees whatever an
earlier delivery for this customer committed: a wamid stored before is skipped, the conversation
is found (or a resolved one reopened, or a new one opened) and bumped only for what is new.
`ON CONFLICT (wamid) DO NOTHING` stays the guard of last resort.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import orjson
from sqlalchemy.engine import Connection

from domain.whatsapp import InboundMessage
from workers.inbound.params import run

# The messages come as one JSON array of rows: psycopg dumps a Python list into an array parameter
# element by element (escaping each), which cost more CPU than the rest of the statement's Python.
_STORE = """
WITH incoming AS (
    SELECT * FROM json_to_recordset(%(rows)s::json) AS i(
        wamid text, type text, body text, context_wamid text, raw jsonb, ts bigint, unread boolean,
        code int, title text, details text, ord int
    )
), stored AS (
    -- `= ANY(array)` keeps this an index lookup even under a generic plan (see contacts.py).
    SELECT m.wamid FROM messages m WHERE m.wamid = ANY(ARRAY(SELECT wamid FROM incoming))
), fresh AS (
    SELECT i.* FROM incoming i WHERE i.wamid NOT IN (SELECT wamid FROM stored)
), current_conversation AS (
    SELECT c.id, c.status FROM conversations c WHERE c.contact_id = %(contact)s::uuid
    ORDER BY (c.status <> 'resolved') DESC, c.last_message_at DESC NULLS LAST, c.created_at DESC
    LIMIT 1
), bumped AS (
    UPDATE conversations c SET
        status = CASE WHEN c.status = 'resolved' THEN 'open' ELSE c.status END,
        last_message_at = GREATEST(c.last_message_at, (SELECT to_timestamp(max(ts)) FROM fresh)),
        unread_count = c.unread_count + (SELECT count(*) FROM fresh WHERE unread),
        updated_at = now()
    FROM current_conversation cc
    WHERE c.id = cc.id AND EXISTS (SELECT 1 FROM fresh)
    RETURNING c.id, cc.status AS previous_status
), opened AS (
    INSERT INTO conversations (organization_id, contact_id, status, last_message_at, unread_count)
    SELECT %(org)s::uuid, %(contact)s::uuid, 'open',
           (SELECT to_timestamp(max(ts)) FROM fresh), (SELECT count(*) FROM fresh WHERE unread)
    WHERE NOT EXISTS (SELECT 1 FROM current_conversation) AND EXISTS (SELECT 1 FROM fresh)
    RETURNING id, NULL::text AS previous_status
), conversation AS (
    SELECT * FROM bumped UNION ALL SELECT * FROM opened
), inserted AS (
    INSERT INTO messages (
        organization_id, conversation_id, contact_id, phone_number_id, wamid, direction, type, text,
        context_wamid, status, error_code, error_title, error_details, raw, sent_at, received_at,
        created_at
    )
    SELECT %(org)s::uuid, (SELECT id FROM conversation), %(contact)s::uuid, %(phone_number_id)s,
           f.wamid, 'inbound', f.type, f.body, f.context_wamid, 'received', f.code, f.title, f.details,
           f.raw,
           to_timestamp(f.ts), to_timestamp(%(received_at)s::float8), clock_timestamp()
    FROM fresh f ORDER BY f.ord
    ON CONFLICT (wamid) DO NOTHING
    RETURNING id, wamid
)
SELECT 'message' AS kind, id, wamid AS detail FROM inserted
UNION ALL
SELECT 'conversation', id, coalesce(previous_status, 'new') FROM conversation
"""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: UUID
    wamid: str
    message: InboundMessage
    conversation_id: UUID
    contact_id: UUID


@dataclass(frozen=True, slots=True)
class StoreResult:
    stored: list[StoredMessage]
    conversation_id: UUID | None
    # "new" (opened now), "resolved" (reopened now), or the status it already had.
    conversation_previous_status: str | None


def refers_to(message: InboundMessage) -> str | None:
    """The wamid stored in `context_wamid`: the quoted message, or what a reaction, edit or revoke
    is about."""
    if message.reaction is not None:
        return message.reaction.target_wamid
    return message.context_wamid or message.target_wamid


def store_messages(
    conn: Connection,
    *,
    organization_id: UUID,
    contact_id: UUID,
    phone_number_id: str,
    messages: list[InboundMessage],
    received_at: float,
) -> StoreResult:
    rows = run(
        conn,
        _STORE,
        {
            "org": str(organization_id),
            "contact": str(contact_id),
            "phone_number_id": phone_number_id,
            "received_at": received_at,
            "rows": orjson.dumps(
                [
                    {
                        "wamid": m.wamid,
                        "type": m.type,
                        "body": m.text,
                        "context_wamid": refers_to(m),
                        "raw": m.raw,
                        "ts": m.timestamp,
                        "unread": m.counts_as_unread,
                        "code": m.errors[0].code if m.errors else None,
                        "title": m.errors[0].title if m.errors else None,
                        "details": m.errors[0].details if m.errors else None,
                        "ord": i,
                    }
                    for i, m in enumerate(messages)
                ]
            ).decode(),
        },
    ).all()
    conversation_id: UUID | None = None
    previous: str | None = None
    ids: dict[str, UUID] = {}
    for row in rows:
        if row.kind == "conversation":
            conversation_id, previous = row.id, row.detail
        else:
            ids[row.detail] = row.id
    stored: list[StoredMessage] = []
    if conversation_id is not None:
        by_wamid = {m.wamid: m for m in messages}
        stored = [
            StoredMessage(ids[w], w, by_wamid[w], conversation_id, contact_id) for w in by_wamid if w in ids
        ]
    return StoreResult(stored, conversation_id, previous)
