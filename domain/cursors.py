"""Keyset cursors: an opaque token naming the last row of a page, so the next page starts after it
(never by OFFSET, so rows that arrive meanwhile never shift a page).

A cursor is that row's keys (a time and an id, typically) as base64url JSON. It is not a secret
(row-level security scopes every read), only opaque, so clients do not build their own.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson


class InvalidCursor(ValueError):
    """A cursor not made by `encode_cursor` with the expected keys."""


def encode_cursor(*keys: Any) -> str:
    raw = orjson.dumps([k.isoformat() if isinstance(k, datetime) else str(k) for k in keys])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        keys = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor("the cursor is not one this service issued") from exc
    if not isinstance(keys, list) or len(keys) != arity or not all(isinstance(k, str) for k in keys):
        raise InvalidCursor("the cursor is not one this service issued")
    return keys


def time_and_id(cursor: str) -> tuple[datetime, UUID]:
    """The (time, id) keyset of a cursor made by `encode_cursor(at, id)`."""
    at, row_id = decode_cursor(cursor, 2)
    try:
        return datetime.fromisoformat(at), UUID(row_id)
    except ValueError as exc:
        raise InvalidCursor("the cursor is not one this service issued") from exc


def next_cursor(rows: Sequence[Any], limit: int, *key_names: str) -> str | None:
    """The cursor after a page that came back full (one more row was asked for to know); else None."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(*(last[name] for name in key_names))
