"""Storing one customer's new messages and bumping their conversation (`db.repos.inbound.messages`,
one statement): the rows it takes, and what it stored, as the handler needs them."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import orjson
from sqlalchemy.engine import Connection

from db.repos.inbound import messages as repo
from domain.whatsapp import InboundMessage


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
    rows = repo.store(
        conn,
        organization_id=organization_id,
        contact_id=contact_id,
        phone_number_id=phone_number_id,
        received_at=received_at,
        rows=orjson.dumps(
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
    )
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
