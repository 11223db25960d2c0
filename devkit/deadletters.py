"""Dead letters written straight into Postgres (as the recorder writes them), for API, CLI and
benchmark tests that need many of them without killing jobs one by one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import dead_letters
from db.uow import UnitOfWork


def letter_row(
    queue: str, organization_id: UUID | None, n: int = 0, *, error_class: str = "Broken", **extra: Any
) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        "queue": queue,
        "actor": f"{queue}_actor",
        "message_id": str(uuid.uuid4()),
        "args": [f"k-{n}"],
        "kwargs": {},
        "options": {"retries": 3, "max_retries": 2},
        "error": f"{error_class}: failure {n}",
        "error_class": error_class,
        "error_message": f"failure {n}",
        "transient": error_class == "Broken",
        "traceback": f"Traceback (most recent call last):\n{error_class}: failure {n}\n",
        "attempts": 3,
        **extra,
    }


def seed_letters(engine: Engine, rows: Sequence[dict[str, Any]]) -> list[UUID]:
    with UnitOfWork(engine, system=True) as uow:
        ids = [
            UUID(str(i))
            for i in uow.conn.execute(
                sa.insert(dead_letters).returning(dead_letters.c.id), list(rows)
            ).scalars()
        ]
        uow.commit()
    return ids
