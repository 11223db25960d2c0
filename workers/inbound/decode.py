"""The queued body (the webhook's exact text) to typed items; anything unreadable is permanent."""

from __future__ import annotations

from typing import Any

import orjson

from domain.errors import InvalidPayload
from domain.whatsapp import Delivery, parse_delivery

# Postgres text and jsonb cannot hold U+0000; it is the one character replaced on the way in.
_NUL_ESCAPE = "\\u0000"


def decode_delivery(body: str | bytes) -> Delivery:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"delivery is not JSON: {exc}") from None
    if _NUL_ESCAPE in (body if isinstance(body, str) else body.decode("utf-8", "replace")):
        document = _without_nul(document)
    return parse_delivery(document)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value
