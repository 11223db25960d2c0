"""Storing one customer's new messages and bumping their conversation, in one statement.

It runs after the contact row is locked (see `contacts`), so its snapshot already sees whatever an
earlier delivery for this customer committed: a wamid stored before is skipped, the conversation
is found (or a resolved one reopened, or a new one opened) and bumped only for what is new.
`ON CONFLICT (wamid) DO NOTHING` stays the guard of last resort.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.engine import Connection

from db.repos.inbound.runner import run
from domain.inbox import INBOUND, RECEIVED, ConversationStatus

_OPEN = ConversationStatus.OPEN.value
_RESOLVED = ConversationStatus.RESOLVED.value

# The messages come as one JSON array of rows: psycopg dumps a Python list into an array parameter
# element by element (escaping each), which cost more CPU than the rest of the statement's Python.
# Built from `domain.inbox` constants only; no input reaches the text.
_STORE = f"""
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
    ORDER BY (c.status <> '{_RESOLVED}') DESC, c.last_message_at DESC NULLS LAST, c.created_at DESC
    LIMIT 1
), bumped AS (
    UPDATE conversations c SET
        status = CASE WHEN c.status = '{_RESOLVED}' THEN '{_OPEN}' ELSE c.status END,
        last_message_at = GREATEST(c.last_message_at, (SELECT to_timestamp(max(ts)) FROM fresh)),
        unread_count = c.unread_count + (SELECT count(*) FROM fresh WHERE unread),
        updated_at = now()
    FROM current_conversation cc
    WHERE c.id = cc.id AND EXISTS (SELECT 1 FROM fresh)
    RETURNING c.id, cc.status AS previous_status
), opened AS (
    INSERT INTO conversations (organization_id, contact_id, status, last_message_at, unread_count)
    SELECT %(org)s::uuid, %(contact)s::uuid, '{_OPEN}',
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
           f.wamid, '{INBOUND}', f.type, f.body, f.context_wamid, '{RECEIVED}', f.code, f.title,
           f.details, f.raw,
           to_timestamp(f.ts), to_timestamp(%(received_at)s::float8), clock_timestamp()
    FROM fresh f ORDER BY f.ord
    ON CONFLICT (wamid) DO NOTHING
    RETURNING id, wamid
)
SELECT 'message' AS kind, id, wamid AS detail FROM inserted
UNION ALL
SELECT 'conversation', id, coalesce(previous_status, 'new') FROM conversation
"""  # noqa: S608


def store(
    conn: Connection,
    *,
    organization_id: UUID,
    contact_id: UUID,
    phone_number_id: str,
    received_at: float,
    rows: str,
) -> list[Any]:
    """Rows (`kind`, `id`, `detail`): a `message` per new wamid (detail = the wamid), and at most
    one `conversation` (detail = its status before, or `new`). `rows` is the JSON array of the
    messages: wamid, type, body, context_wamid, raw, ts, unread, code, title, details, ord."""
    return run(
        conn,
        _STORE,
        {
            "org": str(organization_id),
            "contact": str(contact_id),
            "phone_number_id": phone_number_id,
            "received_at": received_at,
            "rows": rows,
        },
    ).all()
