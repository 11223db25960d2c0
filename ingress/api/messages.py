"""`/messages`: send a message (202, queued for the send worker), read one, list outbound ones."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.engine import RowMapping

from db.repos import outbound as repo
from db.uow import UnitOfWork
from ingress.api.accept import accept_send
from ingress.api.errors import AUTH_ERRORS, BODY_ERRORS, SENDER_ERRORS, ApiError, ErrorCode
from ingress.api.idempotency import parse_key
from ingress.api.models import (
    ListMessagesQuery,
    MessageAccepted,
    MessageError,
    MessagePathParams,
    MessageView,
    SendMessageRequest,
)
from ingress.api.operations import Call, HeaderParam, Operation, Reply, accepted
from ingress.api.pagination import next_cursor, time_and_id


def _link(call: Call, message_id: UUID) -> str:
    return f"{call.resources.options.base_path}/messages/{message_id}"


def send_message(call: Call) -> Reply:
    key = parse_key(call.headers.get("idempotency-key"))
    sent = accept_send(
        call.resources, call.principal.organization_id, call.body, key, api_key_id=call.principal.key_id
    )
    link = _link(call, sent.message_id)
    return accepted(MessageAccepted(id=sent.message_id, links={"self": link}), link, replayed=sent.replayed)


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
            *AUTH_ERRORS,
            *BODY_ERRORS,
            ErrorCode.VALIDATION_FAILED,
            ErrorCode.IDEMPOTENCY_KEY_INVALID,
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            ErrorCode.OUTSIDE_CUSTOMER_WINDOW,
            ErrorCode.CONTACT_OPTED_OUT,
            *SENDER_ERRORS,
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
        errors=(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED, ErrorCode.NOT_FOUND),
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
        errors=(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED, ErrorCode.INVALID_CURSOR),
    ),
)
