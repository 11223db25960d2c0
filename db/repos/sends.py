"""What the send use case needs beyond the outbound repository: a small read, and the set-based
writes that queue many messages at once (a broadcast chunk), each statement doing for every
message what `db.repos.outbound`'s one-message functions do for one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.tables import messages


def message_exists(conn: Connection, message_id: UUID) -> bool:
    return conn.execute(sa.select(messages.c.id).where(messages.c.id == message_id)).first() is not None


_INSERT_CONTACTS = sa.text(
    """
    INSERT INTO contacts (organization_id, wa_id, phone)
    SELECT :org, w, w FROM unnest(CAST(:wa_ids AS text[])) AS w
    ON CONFLICT (organization_id, wa_id) DO NOTHING
    RETURNING wa_id, id
    """
)
_CONTACT_IDS = sa.text("SELECT wa_id, id FROM contacts WHERE wa_id = ANY(CAST(:wa_ids AS text[]))")


def ensure_contacts(conn: Connection, organization_id: UUID, wa_ids: Sequence[str]) -> dict[str, UUID]:
    """The contacts for `wa_ids` (distinct), created (without an inbound time) where missing."""
    if not wa_ids:
        return {}
    found = {
        str(r.wa_id): r.id
        for r in conn.execute(_INSERT_CONTACTS, {"org": organization_id, "wa_ids": list(wa_ids)})
    }
    missing = [w for w in wa_ids if w not in found]
    if missing:  # created meanwhile by another transaction: this statement's snapshot sees them
        found.update({str(r.wa_id): r.id for r in conn.execute(_CONTACT_IDS, {"wa_ids": missing})})
    return found


# Literals, not parameters, in the predicates: Postgres must see the partial index's own predicate
# to infer it (as in `db.repos.outbound.ensure_open_conversation`).
_OPEN_CONVERSATIONS = sa.text(
    """
    INSERT INTO conversations (organization_id, contact_id, last_message_at)
    SELECT :org, c, now() FROM unnest(CAST(:contact_ids AS uuid[])) AS c
    ON CONFLICT (contact_id) WHERE status <> 'resolved' DO NOTHING
    """
)
# Rows locked in one order, so two transactions touching the same contacts cannot deadlock.
_TOUCH_CONVERSATIONS = sa.text(
    """
    UPDATE conversations c SET last_message_at = now(), updated_at = now()
    FROM (SELECT id FROM conversations
          WHERE contact_id = ANY(CAST(:contact_ids AS uuid[])) AND status <> 'resolved'
          ORDER BY id FOR UPDATE) o
    WHERE c.id = o.id
    RETURNING c.contact_id, c.id
    """
)


def ensure_open_conversations(
    conn: Connection, organization_id: UUID, contact_ids: Sequence[UUID]
) -> dict[UUID, UUID]:
    """Each contact's open conversation (opened where there is none), touched as a new message's."""
    if not contact_ids:
        return {}
    params = {"org": organization_id, "contact_ids": sorted(set(contact_ids))}
    conn.execute(_OPEN_CONVERSATIONS, params)
    return {UUID(str(r.contact_id)): UUID(str(r.id)) for r in conn.execute(_TOUCH_CONVERSATIONS, params)}


@dataclass(frozen=True, slots=True)
class QueuedRow:
    id: UUID
    contact_id: UUID
    conversation_id: UUID
    type: str
    text: str | None
    context_wamid: str | None
    payload: Mapping[str, Any]


_INSERT_QUEUED = sa.text(
    """
    INSERT INTO messages (id, organization_id, contact_id, conversation_id, phone_number_id, direction,
                          type, text, context_wamid, status, raw)
    SELECT m.id, :org, m.contact_id, m.conversation_id, :number, 'outbound', m.type, m.text,
           m.context_wamid, 'queued', m.raw
    FROM unnest(CAST(:id AS uuid[]), CAST(:contact_id AS uuid[]), CAST(:conversation_id AS uuid[]),
                CAST(:type AS text[]), CAST(:text AS text[]), CAST(:context_wamid AS text[]),
                CAST(:raw AS jsonb[])) AS m(id, contact_id, conversation_id, type, text, context_wamid, raw)
    """
)


def insert_queued_many(
    conn: Connection, organization_id: UUID, number: str, rows: Sequence[QueuedRow]
) -> None:
    """The `queued` rows of many messages from one number (none with an idempotency key)."""
    if not rows:
        return
    conn.execute(
        _INSERT_QUEUED,
        {
            "org": organization_id,
            "number": number,
            "id": [r.id for r in rows],
            "contact_id": [r.contact_id for r in rows],
            "conversation_id": [r.conversation_id for r in rows],
            "type": [r.type for r in rows],
            "text": [r.text for r in rows],
            "context_wamid": [r.context_wamid for r in rows],
            "raw": [orjson.dumps(r.payload).decode() for r in rows],
        },
    )
