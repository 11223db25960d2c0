"""Contacts of a change: the newest name and inbound time per customer folded from its profiles and
messages, upserted (and locked until commit, see `db.repos.inbound.contacts`); number changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import orjson
from sqlalchemy.engine import Connection

from db.repos.inbound import contacts as repo
from domain.whatsapp import InboundMessage, NumberChange, Profile


@dataclass(frozen=True, slots=True)
class ContactRow:
    id: UUID
    wa_id: str
    created: bool


def upsert_contacts(
    conn: Connection,
    organization_id: UUID,
    profiles: tuple[Profile, ...],
    messages: tuple[InboundMessage, ...],
) -> dict[str, ContactRow]:
    """The customers of the change that sent something new, by wa_id."""
    names: dict[str, str | None] = {}
    last: dict[str, int | None] = {}
    for profile in profiles:
        names[profile.wa_id] = profile.name or names.get(profile.wa_id)
    for message in messages:
        names.setdefault(message.sender, None)
        # A system notice is not the customer writing, so it does not open the service window.
        if message.type != "system":
            previous = last.get(message.sender)
            last[message.sender] = message.timestamp if previous is None else max(previous, message.timestamp)
        else:
            last.setdefault(message.sender, None)
    if not messages:
        return {}
    wa_ids = sorted(last)
    rows = repo.upsert(
        conn,
        organization_id,
        contacts=orjson.dumps(
            [{"wa_id": w, "name": names.get(w), "ts": last.get(w)} for w in wa_ids]
        ).decode(),
        messages=orjson.dumps([{"sender": m.sender, "wamid": m.wamid} for m in messages]).decode(),
    )
    return {r.wa_id: ContactRow(r.id, r.wa_id, r.created) for r in rows}


@dataclass(frozen=True, slots=True)
class NumberChangeResult:
    contact_id: UUID
    mode: str  # "rekeyed": the contact now carries the new number; "linked": it points at the other
    new_contact_id: UUID


def change_number(conn: Connection, contact_id: UUID, change: NumberChange) -> NumberChangeResult:
    """Re-key the contact to its new number, or, when a contact with the new number already exists
    (the customer wrote from it first), link the old one to it. History stays where it is."""
    existing = repo.lock_by_wa_id(conn, change.new_wa_id)
    if existing is None:
        repo.rekey(conn, contact_id, change.new_wa_id)
        return NumberChangeResult(contact_id, "rekeyed", contact_id)
    repo.link_replaced(conn, contact_id, existing)
    return NumberChangeResult(contact_id, "linked", existing)
