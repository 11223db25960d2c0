"""Contacts: upserted by (organization, wa_id) with the profile name and the last inbound time,
and re-keyed or linked when the customer changes number.

The upsert also locks every contact row of the change until commit, which serialises concurrent
deliveries for the same customer: find-or-open of the conversation and the dedupe check after it
then cannot race.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.engine import Connection

from db.repos.inbound.runner import run

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

_LOCK_BY_WA_ID = "SELECT id FROM contacts WHERE wa_id = %(wa_id)s FOR UPDATE"
_REKEY = "UPDATE contacts SET wa_id = %(new)s, phone = %(new)s, updated_at = now() WHERE id = %(id)s"
_LINK = "UPDATE contacts SET replaced_by_contact_id = %(to)s, updated_at = now() WHERE id = %(id)s"


def upsert(conn: Connection, organization_id: UUID, *, contacts: str, messages: str) -> list[Any]:
    """Rows (`id`, `wa_id`, `created`) of the senders with a message not stored yet. `contacts` is
    the JSON array of (wa_id, name, ts), sorted by wa_id; `messages` that of (sender, wamid)."""
    return run(conn, _UPSERT, {"org": str(organization_id), "contacts": contacts, "messages": messages}).all()


def lock_by_wa_id(conn: Connection, wa_id: str) -> UUID | None:
    """The contact with this number, locked until commit, if there is one."""
    found: UUID | None = run(conn, _LOCK_BY_WA_ID, {"wa_id": wa_id}).scalar_one_or_none()
    return found


def rekey(conn: Connection, contact_id: UUID, new_wa_id: str) -> None:
    run(conn, _REKEY, {"new": new_wa_id, "id": contact_id})


def link_replaced(conn: Connection, contact_id: UUID, replaced_by: UUID) -> None:
    run(conn, _LINK, {"to": replaced_by, "id": contact_id})
