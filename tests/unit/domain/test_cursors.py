"""Keyset cursors: what `encode_cursor` makes decodes back; anything else is `InvalidCursor`."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.cursors import InvalidCursor, decode_cursor, encode_cursor, next_cursor, time_and_id


def test_a_time_and_id_cursor_round_trips() -> None:
    at, row_id = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC), uuid4()
    assert time_and_id(encode_cursor(at, row_id)) == (at, row_id)
    assert decode_cursor(encode_cursor(42), 1) == ["42"]


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        _raw("not json"),
        _raw('{"a": 1, "b": 2}'),
        _raw('["2026-12-01T00:00:00+00:00"]'),
        _raw('["2026-12-01T00:00:00+00:00", 5]'),
        _raw('["yesterday", "' + str(uuid4()) + '"]'),
        _raw('["2026-12-01T00:00:00+00:00", "not-a-uuid"]'),
    ],
)
def test_anything_else_is_an_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        time_and_id(cursor)


def test_the_next_cursor_names_the_last_row_of_a_full_page_only() -> None:
    rows = [{"at": datetime(2026, 12, 1, tzinfo=UTC), "id": uuid4()} for _ in range(3)]
    assert next_cursor(rows, 3, "at", "id") is None
    assert time_and_id(next_cursor(rows, 2, "at", "id") or "") == (rows[1]["at"], rows[1]["id"])
