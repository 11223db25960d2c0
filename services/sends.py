"""Accepting a send: every rule that can be checked before queueing, then the `queued` row and its
`send_message` job in one transaction (published after the commit, or swept from the outbox).

The rules, in order, each refusing with its own code: idempotency replay or reuse; the sending
number; the contact's opt-out; the 24-hour customer window (outside it only a template); the
template against the synced ones; the plan (billing). Nothing is written unless all pass.

`POST /api/v1/messages` calls `accept_send`; a broadcast's chunk executor queues its recipients'
messages with `queue_messages` (the same rows as `queue_message`'s, written in sets) after the same
recipient and template rules (`recipient_refusal`, `template_refusal`), so a broadcast item and a
single send become the same row, sent by the same job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.engine import Connection, Engine

from db.repos import audit, templates
from db.repos import outbound as repo
from db.repos import sends as sends_repo
from db.repos.billing import check_send_allowed
from db.repos.sends import message_exists
from db.uow import UnitOfWork
from domain.idempotency import RETENTION
from domain.outbound import send_job, within_customer_window
from domain.ports import JobPublisher
from domain.templates import check_template_send
from services.errors import Refused

log = logging.getLogger(__name__)

# The API's codes for these refusals (see ingress.api.errors).
CONTACT_OPTED_OUT = "contact_opted_out"
OUTSIDE_CUSTOMER_WINDOW = "outside_customer_window"
NO_PHONE_NUMBER = "no_phone_number"
PHONE_NUMBER_REQUIRED = "phone_number_required"
PHONE_NUMBER_UNKNOWN = "phone_number_unknown"
IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to send, in the Cloud API's shape: `body` is what Meta receives (without the
    recipient, which is `to`, digits only)."""

    to: str
    type: str
    body: Mapping[str, Any]
    phone_number_id: str | None = None
    text: str | None = None
    context_wamid: str | None = None

    @property
    def template(self) -> Mapping[str, Any] | None:
        value = self.body.get("template") if self.type == "template" else None
        return value if isinstance(value, Mapping) else None


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: UUID
    replayed: bool


@dataclass(frozen=True, slots=True)
class Idempotency:
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class SendPorts:
    engine: Engine
    jobs: JobPublisher


def accept_send(
    ports: SendPorts,
    organization_id: UUID,
    message: OutgoingMessage,
    idempotency: Idempotency | None,
    *,
    api_key_id: UUID | None = None,
) -> Accepted:
    """Check and queue one message; raises `Refused` (nothing written) when a rule says no. The
    acceptance is recorded in the audit trail (`message.accepted`) in the same transaction."""
    # Twice at most: a lost race for the idempotency key is answered from the winner's row.
    for _ in range(2):
        with UnitOfWork(ports.engine, organization_id=organization_id, publisher=ports.jobs) as uow:
            if idempotency is not None:
                prior = _prior(uow.conn, idempotency)
                if prior is not None:
                    return Accepted(prior, replayed=True)
            number = sending_number(uow.conn, message.phone_number_id)
            contact = repo.find_contact(uow.conn, message.to)
            refusal = recipient_refusal(contact, message, datetime.now(UTC))
            if refusal is not None:
                raise refusal
            check_template(uow.conn, message)
            decision = check_send_allowed(uow.conn, organization_id, 1)
            if not decision.allowed:
                raise Refused(str(decision.code), decision.message, {"billing": str(decision.code)})
            message_id = queue_message(uow.conn, organization_id, message, number, contact, idempotency)
            if message_id is None:
                continue
            uow.enqueue(send_job(organization_id, message_id, number, message.to))
            audit.append(
                uow.conn,
                organization_id,
                audit.MESSAGE,
                message_id,
                "message.accepted",
                {
                    "via": "api",
                    "api_key_id": str(api_key_id) if api_key_id else None,
                    "phone_number_id": number,
                    "type": message.type,
                    "idempotency_key": idempotency.key if idempotency else None,
                },
            )
            _commit(uow, ports.engine, organization_id, message_id)
            return Accepted(message_id, replayed=False)
    raise Refused(INTERNAL_ERROR, "Could not settle the idempotency key; retry.")


def _prior(conn: Connection, idempotency: Idempotency) -> UUID | None:
    prior = repo.find_by_idempotency_key(conn, idempotency.key)
    if prior is None:
        return None
    if datetime.now(UTC) - prior.created_at >= RETENTION:
        repo.release_idempotency_key(conn, prior.id)
        return None
    if prior.fingerprint != idempotency.fingerprint:
        raise Refused(IDEMPOTENCY_KEY_REUSED, details={"message_id": str(prior.id)})
    return prior.id


def sending_number(conn: Connection, requested: str | None) -> str:
    """The number to send from: the one named, or the organization's only one."""
    numbers = repo.phone_numbers(conn)
    if requested is not None:
        if requested not in numbers:
            raise Refused(PHONE_NUMBER_UNKNOWN, details={"phone_number_id": requested})
        return requested
    if not numbers:
        raise Refused(NO_PHONE_NUMBER)
    if len(numbers) > 1:
        raise Refused(PHONE_NUMBER_REQUIRED, details={"phone_number_ids": numbers})
    return numbers[0]


def recipient_refusal(
    contact: repo.ContactFacts | None, message: OutgoingMessage, now: datetime
) -> Refused | None:
    """The opt-out and the 24-hour window, for one recipient (None: may be sent)."""
    if contact is not None and contact.opted_out:
        return Refused(CONTACT_OPTED_OUT)
    if message.type != "template" and not within_customer_window(
        contact.last_inbound_at if contact else None, now
    ):
        last = contact.last_inbound_at.isoformat() if contact and contact.last_inbound_at else None
        return Refused(
            OUTSIDE_CUSTOMER_WINDOW, details={"rule": "24h_customer_window", "last_inbound_at": last}
        )
    return None


def check_template(conn: Connection, message: OutgoingMessage) -> None:
    """A template send must fit a synced, approved template (name, language, parameter counts)."""
    template = message.template
    if template is None:
        return
    refusal = template_refusal(message, templates.named(conn, str(template.get("name", ""))))
    if refusal is not None:
        raise refusal


def template_refusal(message: OutgoingMessage, known: Sequence[Any]) -> Refused | None:
    """`check_template` against templates already read (`db.repos.templates.named` of the
    message's template name): for many messages of one template, read once."""
    template = message.template
    if template is None:
        return None
    name = str(template.get("name", ""))
    language = template.get("language")
    code = str(language.get("code", "")) if isinstance(language, Mapping) else ""
    problem = check_template_send(name, code, known, template.get("components") or [])
    return None if problem is None else Refused(problem.code, problem.message, dict(problem.details))


def queue_message(
    conn: Connection,
    organization_id: UUID,
    message: OutgoingMessage,
    number: str,
    contact: repo.ContactFacts | None,
    idempotency: Idempotency | None = None,
) -> UUID | None:
    """Write the `queued` row (and the contact and open conversation it needs); None when a
    concurrent request took the same idempotency key. The caller enqueues its `send_job`."""
    contact_id = contact.id if contact is not None else repo.ensure_contact(conn, organization_id, message.to)
    message_id = uuid4()
    inserted = repo.insert_queued(
        conn,
        repo.NewOutbound(
            id=message_id,
            organization_id=organization_id,
            contact_id=contact_id,
            conversation_id=repo.ensure_open_conversation(conn, organization_id, contact_id),
            phone_number_id=number,
            type=message.type,
            text=message.text,
            context_wamid=message.context_wamid,
            payload=graph_payload(message, message_id),
            idempotency_key=idempotency.key if idempotency else None,
            fingerprint=idempotency.fingerprint if idempotency else None,
        ),
    )
    return message_id if inserted else None


def queue_messages(
    conn: Connection,
    organization_id: UUID,
    outgoing: Sequence[tuple[OutgoingMessage, repo.ContactFacts | None]],
    number: str,
) -> list[UUID]:
    """`queue_message` for many messages (without idempotency keys) from one number, each with
    its contact's facts (None: not a contact yet), in a few statements whatever their count:
    missing contacts created, each contact's open conversation ensured, the `queued` rows
    written. Answers the message ids in order; the caller enqueues their `send_job`s."""
    if not outgoing:
        return []
    new = list(dict.fromkeys(m.to for m, contact in outgoing if contact is None))
    created = sends_repo.ensure_contacts(conn, organization_id, new)
    contact_ids = [contact.id if contact is not None else created[m.to] for m, contact in outgoing]
    conversations = sends_repo.ensure_open_conversations(conn, organization_id, contact_ids)
    rows = []
    for (message, _), contact_id in zip(outgoing, contact_ids, strict=True):
        message_id = uuid4()
        rows.append(
            sends_repo.QueuedRow(
                id=message_id,
                contact_id=contact_id,
                conversation_id=conversations[contact_id],
                type=message.type,
                text=message.text,
                context_wamid=message.context_wamid,
                payload=graph_payload(message, message_id),
            )
        )
    sends_repo.insert_queued_many(conn, organization_id, number, rows)
    return [r.id for r in rows]


def graph_payload(message: OutgoingMessage, message_id: UUID) -> dict[str, Any]:
    """The Cloud API body, as the send worker will post it; the message id rides along in
    `biz_opaque_callback_data`, which Meta echoes in status webhooks."""
    body = dict(message.body)
    body.pop("phone_number_id", None)
    body["to"] = message.to
    body["biz_opaque_callback_data"] = str(message_id)
    return body


def _commit(uow: UnitOfWork, engine: Engine, organization_id: UUID, message_id: UUID) -> None:
    try:
        uow.commit()
    except Exception:
        # The publish after the commit failed, or the commit did: which one decides the answer.
        # A committed row's job is still in the outbox, and the sweep publishes it.
        with UnitOfWork(engine, organization_id=organization_id) as check:
            committed = message_exists(check.conn, message_id)
        if not committed:
            raise
        log.warning(
            "message queued; its job waits in the outbox",
            extra={"message_id": str(message_id)},
            exc_info=True,
        )
