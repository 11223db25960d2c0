"""Named server-side prepared statements for the plain queries of the hottest paths.

A plain (simple-protocol) query is what lets several statements, BEGIN and COMMIT travel as one
message, but Postgres parses and plans every statement of it every time: measured on the send
path, half of Postgres's CPU went to parsing and planning two small transactions. `EXECUTE name(...)`
keeps the one message and skips both: the statement is prepared once per connection, the first
time that connection meets it, and Postgres keeps its plan.

Prepared statements belong to the session, not to a transaction, so a connection remembers what
it has prepared in its pool record, which SQLAlchemy clears whenever the connection is replaced.
The driver, though, sends DEALLOCATE ALL after a rollback once it has prepared statements of its
own, which drops ours too: `execute` then prepares them again and runs the query once more, which
is safe when the query opens its transaction (nothing of it happened). They need a session of
their own on the server: a pooler in transaction mode in front of Postgres would break them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy.engine import Connection

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_PREPARED_KEY = "adsapp_prepared"


@dataclass(frozen=True, slots=True)
class Prepared:
    """One statement with `%(name)s` parameters, each given its SQL type (in any order)."""

    name: str
    sql: str
    types: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, label: str, sql: str, **types: str) -> Prepared:
        used = list(dict.fromkeys(_PLACEHOLDER.findall(sql)))
        if sorted(used) != sorted(types):
            raise ValueError(f"{label}: parameters {used} need exactly one type each, got {sorted(types)}")
        # The text's digest in the name: a changed statement is never mistaken for the old one.
        digest = hashlib.sha256(sql.encode()).hexdigest()[:10]
        return cls(f"adsapp_{label}_{digest}", sql, tuple((p, types[p]) for p in used))

    @property
    def prepare_text(self) -> str:
        position = {param: i for i, (param, _) in enumerate(self.types, 1)}
        body = _PLACEHOLDER.sub(lambda m: f"${position[m.group(1)]}", self.sql)
        return f"PREPARE {self.name} ({', '.join(t for _, t in self.types)}) AS {body}"

    @property
    def execute_text(self) -> str:
        if not self.types:
            return f"EXECUTE {self.name}"
        return f"EXECUTE {self.name}({', '.join(f'%({p})s' for p, _ in self.types)})"


def execute(
    conn: Connection,
    cursor: psycopg.Cursor[Any],
    text: str,
    params: Mapping[str, Any],
    statements: Sequence[Prepared],
    *,
    opens_transaction: bool,
) -> None:
    """`cursor.execute(text, params)` once `statements` are prepared on this connection; when they
    were dropped behind our back and `text` opens its transaction, again after preparing them."""
    ensure(conn, statements)
    try:
        cursor.execute(text, params)
    except psycopg.errors.InvalidSqlStatementName:
        if not opens_transaction:
            raise
        conn.connection.info.pop(_PREPARED_KEY, None)
        cursor.connection.rollback()
        ensure(conn, statements)
        cursor.execute(text, params)


def ensure(conn: Connection, statements: Iterable[Prepared]) -> None:
    """Prepare, on this connection, whichever of `statements` it has not prepared yet (a round
    trip each, once in the connection's life)."""
    done: set[str] = conn.connection.info.setdefault(_PREPARED_KEY, set())
    missing = [s for s in statements if s.name not in done]
    if not missing:
        return
    dbapi: Any = conn.connection.dbapi_connection
    for statement in missing:
        psycopg.ClientCursor(dbapi).execute(statement.prepare_text)
        done.add(statement.name)
