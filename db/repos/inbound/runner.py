"""The runner of the inbound SQL: raw psycopg statements with fixed text, so psycopg prepares
them server-side after a few uses, and rows passed as one JSON parameter or as arrays (one round
trip per batch).

Statements go to the driver's cursor directly, on the unit of work's connection and inside its
transaction: SQLAlchemy's per-statement machinery cost about a third again as much CPU as the
driver's call itself, on statements that run several times per delivery. Errors still leave as
SQLAlchemy's, with a broken connection invalidated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy.engine import Connection

from db.uow import translate_error


class Rows:
    """The rows of one statement (named tuples: `row.column` and `row[0]`)."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    def all(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description is not None else []

    def first(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def scalar_one_or_none(self) -> Any:
        rows = self.all()
        if len(rows) > 1:
            raise ValueError(f"expected at most one row, got {len(rows)}")
        return rows[0][0] if rows else None

    def __iter__(self) -> Iterator[Any]:
        return iter(self.all())


def run(conn: Connection, statement: str, params: Mapping[str, Any]) -> Rows:
    dbapi: Any = conn.connection.dbapi_connection
    cursor: psycopg.Cursor[Any] = dbapi.cursor(row_factory=namedtuple_row)
    try:
        cursor.execute(statement, params)
    except psycopg.Error as exc:
        raise translate_error(conn, exc) from exc
    return Rows(cursor)


def json_text(value: object) -> str | None:
    """JSON for a `::jsonb` cast; None stays SQL NULL."""
    if value is None:
        return None
    return orjson.dumps(value).decode()
