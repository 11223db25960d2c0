"""Helpers shared by the inbound SQL: raw psycopg statements with fixed text, so psycopg prepares
them server-side after a few uses, and rows passed as arrays (one round trip per batch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy.engine import Connection, CursorResult


def run(conn: Connection, statement: str, params: Mapping[str, Any]) -> CursorResult[Any]:
    return conn.exec_driver_sql(statement, dict(params))


def json_text(value: object) -> str | None:
    """JSON for a `::jsonb` cast; None stays SQL NULL."""
    if value is None:
        return None
    return orjson.dumps(value).decode()


def json_texts(values: Sequence[object]) -> list[str | None]:
    return [json_text(v) for v in values]
