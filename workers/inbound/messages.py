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

_STORE = """
WITH incoming AS (
    SELECT * FROM unnest(
        %(wamids)s::text[], %(types)s::text[], %(texts)s::text[], %(contexts)s::text[],
        %(raws)s::text[], %(ts)s::bigint[], %(unread)s::boolean[], %(codes)s::int[], %(titles)s::text[],
        %(details)s::text[]
    ) WITH ORDINALITY AS i(wamid, type, body, context_wamid, raw, ts, unread, code, title, details, ord)
), stored AS (
    -- `= ANY(array)` keeps this an index lookup even under a generic plan (see contacts.py).
    SELECT m.wamid FROM messages m WHERE m.wamid = ANY(%(wamids)s::text[])
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
           f.raw::jsonb,
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
            "wamids": [m.wamid for m in messages],
            "types": [m.type for m in messages],
            "texts": [m.text for m in messages],
            "contexts": [refers_to(m) for m in messages],
            "raws": [orjson.dumps(m.raw).decode() for m in messages],
            "ts": [m.timestamp for m in messages],
            "unread": [m.counts_as_unread for m in messages],
            "codes": [m.errors[0].code if m.errors else None for m in messages],
            "titles": [m.errors[0].title if m.errors else None for m in messages],
            "details": [m.errors[0].details if m.errors else None for m in messages],
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
