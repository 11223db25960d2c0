"""`/messages`: send a message (202, queued for the send worker), read one, list outbound ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy.engine import RowMapping

from db.repos import outbound as repo
from db.uow import UnitOfWork
from ingress.api.accept import accept_send
from ingress.api.errors import ApiError, ErrorCode
from ingress.api.idempotency import parse_key
from ingress.api.models import (
    ListMessagesQuery,
    MessageAccepted,
    MessageError,
    MessagePathParams,
    MessageView,
    SendMessageRequest,
)
from ingress.api.operations import Call, HeaderParam, Operation, Reply
from ingress.api.pagination import next_cursor, time_and_id

_AUTH_ERRORS = (
    ErrorCode.AUTH_MISSING, ErrorCode.AUTH_INVALID, ErrorCode.AUTH_EXPIRED, ErrorCode.AUTH_REVOKED,
    ErrorCode.SCOPE_MISSING, ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE,
)  # fmt: skip


def _link(call: Call, message_id: UUID) -> str:
    return f"{call.resources.options.base_path}/messages/{message_id}"


def send_message(call: Call) -> Reply:
    key = parse_key(call.headers.get("idempotency-key"))
    accepted = accept_send(
        call.resources, call.principal.organization_id, call.body, key, api_key_id=call.principal.key_id
    )
    data = MessageAccepted(id=accepted.message_id, links={"self": _link(call, accepted.message_id)})
    headers = {"Location": _link(call, accepted.message_id)}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    meta: Mapping[str, Any] = {"replayed": True} if accepted.replayed else {}
    return Reply(data, status=202, meta=meta, headers=headers)


def get_message(call: Call) -> Reply:
    path: MessagePathParams = call.path
    with UnitOfWork(call.resources.engine, organization_id=call.principal.organization_id) as uow:
        row = repo.get_message(uow.conn, path.message_id)
    if row is None:
        raise ApiError(ErrorCode.NOT_FOUND, "No message with this id.")
    return Reply(_view(call, row))


def list_messages(call: Call) -> Reply:
    query: ListMessagesQuery = call.query
    after = time_and_id(query.cursor) if query.cursor else None
    with UnitOfWork(call.resources.engine, organization_id=call.principal.organization_id) as uow:
        rows = repo.list_outbound(uow.conn, after=after, limit=query.limit + 1, status=query.status)
    page = [_view(call, row) for row in rows[: query.limit]]
    return Reply(page, meta={"next_cursor": next_cursor(rows, query.limit, "created_at", "id")})


def _view(call: Call, row: RowMapping) -> MessageView:
    failed = row["error_code"] is not None or row["error_title"] is not None
    return MessageView(
        id=row["id"],
        direction=row["direction"],
        type=row["type"],
        status=row["status"],
        to=row["to"],
        phone_number_id=row["phone_number_id"],
        wamid=row["wamid"],
        text=row["text"],
        context_message_id=row["context_wamid"],
        error=MessageError(code=row["error_code"], title=row["error_title"], details=row["error_details"])
        if failed
        else None,
        attempts=row["attempts"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        delivered_at=row["delivered_at"],
        read_at=row["read_at"],
        failed_at=row["failed_at"],
        links={"self": _link(call, row["id"])},
    )


OPERATIONS = (
    Operation(
        operation_id="sendMessage",
        method="POST",
        path="/messages",
        summary="Send a WhatsApp message",
        description=(
            "Checks the message (customer window, opt-out, template, plan), stores it as `queued` and "
            "queues its delivery; answers 202 with its id. Outside the 24-hour customer window only a "
            "template may be sent. With `Idempotency-Key`, a retry with the same key and body within "
            "24 hours answers as the first request did, without sending again."
        ),
        scope="messages:write",
        handler=send_message,
        response=MessageAccepted,
        status=202,
        body=SendMessageRequest,
        headers=(
            HeaderParam(
                "Idempotency-Key",
                "Makes a retried request safe: same key and body, same answer, one message.",
            ),
        ),
        errors=(
            *_AUTH_ERRORS,
            ErrorCode.INVALID_JSON,
            ErrorCode.VALIDATION_FAILED,
            ErrorCode.PAYLOAD_TOO_LARGE,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            ErrorCode.IDEMPOTENCY_KEY_INVALID,
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            ErrorCode.OUTSIDE_CUSTOMER_WINDOW,
            ErrorCode.CONTACT_OPTED_OUT,
            ErrorCode.NO_PHONE_NUMBER,
            ErrorCode.PHONE_NUMBER_REQUIRED,
            ErrorCode.PHONE_NUMBER_UNKNOWN,
            ErrorCode.TEMPLATE_NOT_FOUND,
            ErrorCode.TEMPLATE_LANGUAGE_MISSING,
            ErrorCode.TEMPLATE_NOT_APPROVED,
            ErrorCode.TEMPLATE_PARAMETERS_MISMATCH,
            "quota_exceeded",
            "subscription_canceled",
        ),
    ),
    Operation(
        operation_id="getMessage",
        method="GET",
        path="/messages/{message_id}",
        summary="A message's status, error and attempts",
        scope="messages:read",
        handler=get_message,
        response=MessageView,
        path_params=MessagePathParams,
        errors=(*_AUTH_ERRORS, ErrorCode.VALIDATION_FAILED, ErrorCode.NOT_FOUND),
    ),
    Operation(
        operation_id="listMessages",
        method="GET",
        path="/messages",
        summary="Outbound messages, newest first (cursor pagination)",
        scope="messages:read",
        handler=list_messages,
        response=list[MessageView],
        query=ListMessagesQuery,
        errors=(*_AUTH_ERRORS, ErrorCode.VALIDATION_FAILED, ErrorCode.INVALID_CURSOR),
    ),
)
