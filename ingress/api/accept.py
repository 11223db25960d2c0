"""The send API's side of accepting a send: the request model as the use case's message, and the
use case's refusals as API errors. The rules themselves live in `services.sends`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from ingress.api.errors import ApiError
from ingress.api.idempotency import fingerprint
from ingress.api.models import AnySend, InteractiveMessage, SendMessageRequest
from ingress.api.resources import ApiResources
from services import sends
from services.errors import Refused

Accepted = sends.Accepted


def accept_send(
    res: ApiResources, organization_id: UUID, request: SendMessageRequest, idempotency_key: str | None
) -> Accepted:
    idempotency = (
        sends.Idempotency(idempotency_key, fingerprint("send_message", request))
        if idempotency_key is not None
        else None
    )
    with refusals_as_api_errors():
        return sends.accept_send(
            sends.SendPorts(res.engine, res.jobs), organization_id, outgoing(request.root), idempotency
        )


def outgoing(send: AnySend) -> sends.OutgoingMessage:
    return sends.OutgoingMessage(
        to=wa_id_of(send.to),
        type=send.type,
        body=send.model_dump(mode="json", exclude_none=True, exclude={"phone_number_id"}),
        phone_number_id=send.phone_number_id,
        text=_text_of(send),
        context_wamid=send.context.message_id if send.context else None,
    )


def wa_id_of(to: str) -> str:
    return to.removeprefix("+")


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


@contextmanager
def refusals_as_api_errors() -> Iterator[None]:
    """`with refusals_as_api_errors(): ...` turns a use case's `Refused` into the API's error."""
    try:
        yield
    except Refused as exc:
        raise ApiError(exc.code, exc.message, exc.details) from exc
