"""Accepting a send: every check that can be made before queueing, then the `queued` row and its
job in one transaction (the job is published after the commit, or swept from the outbox).

Checks, in order, each with its own error code: idempotency replay or reuse; the sending number;
the contact's opt-out; the 24-hour customer window (outside it only a template); the template
against the synced ones; the plan (billing). Nothing is written unless all pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.repos import audit, templates
from db.repos import outbound as repo
from db.repos.billing import check_send_allowed
from db.tables import messages
from db.uow import UnitOfWork
from domain.outbound import send_job, within_customer_window
from domain.templates import check_template_send
from ingress.api.errors import ApiError, ErrorCode
from ingress.api.idempotency import RETENTION, fingerprint
from ingress.api.models import AnySend, InteractiveMessage, SendMessageRequest
from ingress.api.resources import ApiResources

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: UUID
    replayed: bool


def accept_send(
    res: ApiResources,
    organization_id: UUID,
    request: SendMessageRequest,
    idempotency_key: str | None,
    *,
    api_key_id: UUID | None = None,
) -> Accepted:
    fp = fingerprint("send_message", request) if idempotency_key else None
    # Twice at most: a lost race for the idempotency key is answered from the winner's row.
    for _ in range(2):
        with UnitOfWork(res.engine, organization_id=organization_id, publisher=res.jobs) as uow:
            if idempotency_key is not None:
                prior = _prior(uow.conn, idempotency_key, fp)
                if prior is not None:
                    return Accepted(prior, replayed=True)
            queued = _queue(uow.conn, organization_id, request.root, idempotency_key, fp)
            if queued is None:
                continue
            message_id, number = queued
            uow.enqueue(send_job(organization_id, message_id, number, wa_id_of(request.root.to)))
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
                    "type": request.root.type,
                    "idempotency_key": idempotency_key,
                },
            )
            _commit(uow, res, organization_id, message_id)
            return Accepted(message_id, replayed=False)
    raise ApiError(ErrorCode.INTERNAL_ERROR, "Could not settle the idempotency key; retry.")


def wa_id_of(to: str) -> str:
    return to.removeprefix("+")


def _prior(conn: Connection, key: str, fp: str | None) -> UUID | None:
    prior = repo.find_by_idempotency_key(conn, key)
    if prior is None:
        return None
    if datetime.now(UTC) - prior.created_at >= RETENTION:
        repo.release_idempotency_key(conn, prior.id)
        return None
    if prior.fingerprint != fp:
        raise ApiError(ErrorCode.IDEMPOTENCY_KEY_REUSED, details={"message_id": str(prior.id)})
    return prior.id


def _queue(
    conn: Connection, organization_id: UUID, send: AnySend, key: str | None, fp: str | None
) -> tuple[UUID, str] | None:
    number = _sending_number(conn, send.phone_number_id)
    wa_id = wa_id_of(send.to)
    contact = repo.find_contact(conn, wa_id)
    if contact is not None and contact.opted_out:
        raise ApiError(ErrorCode.CONTACT_OPTED_OUT)
    now = datetime.now(UTC)
    if send.type != "template" and not within_customer_window(
        contact.last_inbound_at if contact else None, now
    ):
        last = contact.last_inbound_at.isoformat() if contact and contact.last_inbound_at else None
        raise ApiError(
            ErrorCode.OUTSIDE_CUSTOMER_WINDOW,
            details={"rule": "24h_customer_window", "last_inbound_at": last},
        )
    if send.type == "template":
        template = send.template
        components = [c.model_dump(mode="json", exclude_none=True) for c in template.components]
        problem = check_template_send(
            template.name, template.language.code, templates.named(conn, template.name), components
        )
        if problem is not None:
            raise ApiError(problem.code, problem.message, dict(problem.details))
    decision = check_send_allowed(conn, organization_id, 1)
    if not decision.allowed:
        raise ApiError(str(decision.code), decision.message, {"billing": str(decision.code)})
    contact_id = contact.id if contact is not None else repo.ensure_contact(conn, organization_id, wa_id)
    message_id = uuid4()
    inserted = repo.insert_queued(
        conn,
        repo.NewOutbound(
            id=message_id,
            organization_id=organization_id,
            contact_id=contact_id,
            conversation_id=repo.ensure_open_conversation(conn, organization_id, contact_id),
            phone_number_id=number,
            type=send.type,
            text=_text_of(send),
            context_wamid=send.context.message_id if send.context else None,
            payload=graph_payload(send, message_id),
            idempotency_key=key,
            fingerprint=fp,
        ),
    )
    return (message_id, number) if inserted else None


def _sending_number(conn: Connection, requested: str | None) -> str:
    numbers = repo.phone_numbers(conn)
    if requested is not None:
        if requested not in numbers:
            raise ApiError(ErrorCode.PHONE_NUMBER_UNKNOWN, details={"phone_number_id": requested})
        return requested
    if not numbers:
        raise ApiError(ErrorCode.NO_PHONE_NUMBER)
    if len(numbers) > 1:
        raise ApiError(ErrorCode.PHONE_NUMBER_REQUIRED, details={"phone_number_ids": numbers})
    return numbers[0]


def graph_payload(send: AnySend, message_id: UUID) -> dict[str, Any]:
    """The Cloud API body, as the send worker will post it; the message id rides along in
    `biz_opaque_callback_data`, which Meta echoes in status webhooks."""
    body = send.model_dump(mode="json", exclude_none=True, exclude={"phone_number_id"})
    body["to"] = wa_id_of(send.to)
    body["biz_opaque_callback_data"] = str(message_id)
    return body


def _text_of(send: AnySend) -> str | None:
    if send.type == "text":
        return send.text.body
    if send.type == "reaction":
        return send.reaction.emoji
    if isinstance(send, InteractiveMessage):
        return send.interactive.body.text
    media = getattr(send, send.type, None)
    caption = getattr(media, "caption", None)
    return caption if isinstance(caption, str) else None


def _commit(uow: UnitOfWork, res: ApiResources, organization_id: UUID, message_id: UUID) -> None:
    try:
        uow.commit()
    except Exception:
        # The publish after the commit failed, or the commit did: which one decides the answer.
        # A committed row's job is still in the outbox, and the sweep publishes it.
        with UnitOfWork(res.engine, organization_id=organization_id) as check:
            committed = check.conn.execute(
                sa.select(messages.c.id).where(messages.c.id == message_id)
            ).first()
        if committed is None:
            raise
        log.warning(
            "message queued; its job waits in the outbox",
            extra={"message_id": str(message_id)},
            exc_info=True,
        )
