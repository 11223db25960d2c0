"""Cursor pagination: lists page by an opaque cursor naming the last row seen, never by OFFSET.

The cursor format is `domain.cursors`'; here a cursor the API did not issue is its `invalid_cursor`
error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from uuid import UUID

from domain import cursors
from domain.cursors import encode_cursor, next_cursor
from ingress.api.errors import ApiError, ErrorCode

__all__ = ["decode_cursor", "encode_cursor", "next_cursor", "time_and_id"]


@contextmanager
def _as_api_error() -> Iterator[None]:
    try:
        yield
    except cursors.InvalidCursor as exc:
        raise ApiError(ErrorCode.INVALID_CURSOR) from exc


def decode_cursor(cursor: str, arity: int) -> list[str]:
    with _as_api_error():
        return cursors.decode_cursor(cursor, arity)


def time_and_id(cursor: str) -> tuple[datetime, UUID]:
    """The (created_at, id) keyset of a cursor made by `encode_cursor(created_at, id)`."""
    with _as_api_error():
        return cursors.time_and_id(cursor)
