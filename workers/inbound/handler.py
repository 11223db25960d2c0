"""One tenant-change of a delivery, handled inside the caller's unit of work.

`handle_change` writes everything the change means (contacts, conversations, messages, reactions,
number changes, media rows and their jobs, statuses, domain events) through `uow.conn`, in as few
statements as the change allows, and returns what happened so the caller can count it and publish
live updates after the commit. It never commits: the actor does, once, per tenant-change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import orjson

from db.uow import UnitOfWork
from domain.inbox import UNPARSEABLE
from domain.whatsapp import InboundMessage, WebhookChange
from workers.inbound.contacts import change_number, upsert_contacts
from workers.inbound.events import EventBuffer, record_webhook_event
from workers.inbound.media import add_media
from workers.inbound.messages import StoredMessage, store_messages
from workers.inbound.reactions import apply_reactions
from workers.inbound.statuses import StatusOutcome, record_statuses
from workers.templates import apply_template_status_update


class Routed(Protocol):
    @property
    def organization_id(self) -> UUID: ...


@dataclass(slots=True)
class Outcome:
    organization_id: UUID
    stored: list[StoredMessage] = field(default_factory=list)
    duplicates: int = 0
    statuses: StatusOutcome = field(default_factory=StatusOutcome)
    conversations_opened: int = 0
    conversations_reopened: int = 0
    media_jobs: int = 0
    number_changes: int = 0
    recorded_events: int = 0
    unparsed: int = 0
    realtime: list[dict[str, Any]] = field(default_factory=list)


def handle_change(uow: UnitOfWork, change: WebhookChange, route: Routed, received_at: float) -> Outcome:
    org = route.organization_id
    outcome = Outcome(org)
    events = EventBuffer()
    if not change.is_messages:
        _record_account_event(uow, change, org, received_at, events, outcome)
    else:
        _handle_messages(uow, change, org, received_at, events, outcome)
        if change.statuses:
            _handle_statuses(uow, change, org, events, outcome)
        if change.errors:
            _record_change_errors(uow, change, org, received_at, events)
        if change.unparsed:
            _record_unparsed(uow, change, org, received_at, outcome)
    outcome.recorded_events = events.flush(uow.conn, org)
    return outcome


def _handle_messages(
    uow: UnitOfWork,
    change: WebhookChange,
    org: UUID,
    received_at: float,
    events: EventBuffer,
    outcome: Outcome,
) -> None:
    messages = _unique(change.messages)
    outcome.duplicates = len(change.messages) - len(messages)
    if not messages:
        return
    assert change.phone_number_id is not None
    conn = uow.conn
    contacts = upsert_contacts(conn, org, change.contacts, messages)
    for row in contacts.values():
        if row.created:
            events.add("contact", row.id, "contact.created", wa_id=row.wa_id)
    by_sender: dict[str, list[InboundMessage]] = {}
    for message in messages:
        by_sender.setdefault(message.sender, []).append(message)
    stored: list[StoredMessage] = []
    for sender in sorted(by_sender):
        contact = contacts.get(sender)
        if contact is None:
            outcome.duplicates += len(by_sender[sender])  # every one of them is stored already
            continue
        result = store_messages(
            conn,
            organization_id=org,
            contact_id=contact.id,
            phone_number_id=change.phone_number_id,
            messages=by_sender[sender],
            received_at=received_at,
        )
        outcome.duplicates += len(by_sender[sender]) - len(result.stored)
        stored.extend(result.stored)
        if result.conversation_previous_status in ("new", "resolved"):
            opened = result.conversation_previous_status == "new"
            outcome.conversations_opened += opened
            outcome.conversations_reopened += not opened
            events.add(
                "conversation",
                result.conversation_id or "",
                "conversation.opened" if opened else "conversation.reopened",
                contact_id=str(contact.id),
            )
    outcome.stored = stored
    for s in stored:
        m = s.message
        events.add(
            "message",
            s.id,
            "message.received",
            wamid=s.wamid,
            type=m.type,
            conversation_id=str(s.conversation_id),
            contact_id=str(s.contact_id),
        )
        outcome.realtime.append(
            {
                "event": "message.received",
                "message_id": str(s.id),
                "conversation_id": str(s.conversation_id),
                "wamid": s.wamid,
                "type": m.type,
            }
        )
    reactions = [s.message for s in stored if s.message.reaction is not None]
    for target, emoji in apply_reactions(conn, reactions):
        outcome.realtime.append({"event": "message.reaction", "wamid": target, "emoji": emoji})
    for s in stored:
        number_change = s.message.number_change
        if number_change is None:
            continue
        result_nc = change_number(conn, s.contact_id, number_change)
        outcome.number_changes += 1
        events.add(
            "contact",
            s.contact_id,
            "contact.number_changed",
            old_wa_id=number_change.old_wa_id,
            new_wa_id=number_change.new_wa_id,
            form=number_change.form,
            mode=result_nc.mode,
            new_contact_id=str(result_nc.new_contact_id),
        )
    for job in add_media(conn, org, change.phone_number_id, stored):
        uow.enqueue(job)
        outcome.media_jobs += 1


def _handle_statuses(
    uow: UnitOfWork, change: WebhookChange, org: UUID, events: EventBuffer, outcome: Outcome
) -> None:
    result = record_statuses(uow.conn, org, change.statuses)
    outcome.statuses = result
    for _event_id, wamid, status, message_id in result.events:
        events.add(
            "message",
            message_id or wamid,
            "message.status_changed",
            wamid=wamid,
            status=status,
            pending=message_id is None,
        )
    for message_id, wamid, status in result.changed:
        outcome.realtime.append(
            {"event": "message.status", "message_id": str(message_id), "wamid": wamid, "status": status}
        )


TEMPLATE_STATUS_FIELD = "message_template_status_update"


def _record_account_event(
    uow: UnitOfWork,
    change: WebhookChange,
    org: UUID,
    received_at: float,
    events: EventBuffer,
    outcome: Outcome,
) -> None:
    """Template, quality, account updates...: kept as events; the inbox is not touched."""
    payload = {"entry_id": change.entry_id, "field": change.field, "value": change.value}
    if record_webhook_event(
        uow.conn,
        org,
        event_id=_digest(payload),
        event_type=change.field,
        payload=payload,
        received_at=received_at,
    ):
        events.add("whatsapp_account", change.entry_id, f"whatsapp.{change.field}", value=change.value)
        if change.field == TEMPLATE_STATUS_FIELD:
            # Keeps a paused or disabled template from being accepted by the send API until the next sync.
            apply_template_status_update(uow.conn, org, change.value)


def _record_change_errors(
    uow: UnitOfWork, change: WebhookChange, org: UUID, received_at: float, events: EventBuffer
) -> None:
    errors = [dict(e.raw) for e in change.errors]
    payload = {"entry_id": change.entry_id, "phone_number_id": change.phone_number_id, "errors": errors}
    if record_webhook_event(
        uow.conn,
        org,
        event_id=_digest(payload),
        event_type="messages.errors",
        payload=payload,
        received_at=received_at,
    ):
        events.add("whatsapp_number", change.phone_number_id or "", "whatsapp.errors", errors=errors)


def _record_unparsed(
    uow: UnitOfWork, change: WebhookChange, org: UUID, received_at: float, outcome: Outcome
) -> None:
    """Items of this change that could not be read, kept raw with the reason in `webhook_events`."""
    for item in change.unparsed:
        payload = {
            "entry_id": change.entry_id,
            "phone_number_id": change.phone_number_id,
            "kind": item.kind,
            "reason": item.reason,
            "raw": item.raw,
        }
        outcome.unparsed += record_webhook_event(
            uow.conn,
            org,
            event_id=_digest(payload),
            event_type=f"messages.unparseable_{item.kind}",
            payload=payload,
            received_at=received_at,
            outcome=UNPARSEABLE,
        )


def _digest(payload: object) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _unique(messages: tuple[InboundMessage, ...]) -> tuple[InboundMessage, ...]:
    seen: set[str] = set()
    kept: list[InboundMessage] = []
    for m in messages:
        if m.wamid not in seen:
            seen.add(m.wamid)
            kept.append(m)
    return tuple(kept)
