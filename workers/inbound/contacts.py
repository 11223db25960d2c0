"""Contacts: upserted by (organization, wa_id) with the profile name and the last inbound time.

The upsert also locks every contact row of the change until commit, which serialises concurrent
deliveries for the same customer: find-or-open of the conversation and the dedupe check after it
then cannot race.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import orjson
from sqlalchemy.engine import Connection

from domain.whatsapp import InboundMessage, NumberChange, Profile
from workers.inbound.params import run

# Only customers with a message not stored yet are touched, so a redelivered delivery changes
# nothing (not even a contact re-keyed since). Sorted input keeps the lock order the same in every
# transaction, so they cannot deadlock. Stored wamids are looked up with `= ANY(array)`: under a
# prepared statement's generic plan an anti-join against the incoming rows is costed for 100 rows
# and becomes a sequential scan of every message. Rows come as JSON (see messages.py).
_UPSERT = """
WITH incoming AS (
    SELECT * FROM json_to_recordset(%(messages)s::json) AS x(sender text, wamid text)
), stored AS (
    SELECT m.wamid FROM messages m WHERE m.wamid = ANY(ARRAY(SELECT wamid FROM incoming))
), pending AS (
    SELECT DISTINCT x.sender FROM incoming x WHERE x.wamid NOT IN (SELECT wamid FROM stored)
)
INSERT INTO contacts (organization_id, wa_id, phone, profile_name, last_inbound_at)
SELECT %(org)s::uuid, c.wa_id, c.wa_id, c.name, to_timestamp(c.ts)
FROM json_to_recordset(%(contacts)s::json) AS c(wa_id text, name text, ts bigint)
WHERE c.wa_id IN (SELECT sender FROM pending)
ORDER BY c.wa_id
ON CONFLICT (organization_id, wa_id) DO UPDATE SET
    profile_name = COALESCE(EXCLUDED.profile_name, contacts.profile_name),
    last_inbound_at = GREATEST(contacts.last_inbound_at, EXCLUDED.last_inbound_at),
    updated_at = now()
RETURNING id, wa_id, (xmax = 0) AS created
"""


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
    rows = run(
        conn,
        _UPSERT,
        {
            "org": str(organization_id),
            "contacts": orjson.dumps(
                [{"wa_id": w, "name": names.get(w), "ts": last.get(w)} for w in wa_ids]
            ).decode(),
            "messages": orjson.dumps([{"sender": m.sender, "wamid": m.wamid} for m in messages]).decode(),
        },
    ).all()
    return {r.wa_id: ContactRow(r.id, r.wa_id, r.created) for r in rows}


@dataclass(frozen=True, slots=True)
class NumberChangeResult:
    contact_id: UUID
    mode: str  # "rekeyed": the contact now carries the new number; "linked": it points at the other
    new_contact_id: UUID


def change_number(conn: Connection, contact_id: UUID, change: NumberChange) -> NumberChangeResult:
    """Re-key the contact to its new number, or, when a contact with the new number already exists
    (the customer wrote from it first), link the old one to it. History stays where it is."""
    existing = run(
        conn,
        "SELECT id FROM contacts WHERE wa_id = %(wa_id)s FOR UPDATE",
        {"wa_id": change.new_wa_id},
    ).scalar_one_or_none()
    if existing is None:
        run(
            conn,
            "UPDATE contacts SET wa_id = %(new)s, phone = %(new)s, updated_at = now() WHERE id = %(id)s",
            {"new": change.new_wa_id, "id": contact_id},
        )
        return NumberChangeResult(contact_id, "rekeyed", contact_id)
    run(
        conn,
        "UPDATE contacts SET replaced_by_contact_id = %(to)s, updated_at = now() WHERE id = %(id)s",
        {"to": existing, "id": contact_id},
    )
    return NumberChangeResult(contact_id, "linked", existing)
