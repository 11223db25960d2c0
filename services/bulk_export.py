"""A bulk job's items as CSV, page by page through `services.bulk.list_items` (its scope and filters)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Final
from uuid import UUID

from sqlalchemy.engine import Engine

from services import bulk

COLUMNS: Final = (
    "seq",
    "recipient",
    "status",
    "message_id",
    "wamid",
    "error_code",
    "error_title",
    "settled_at",
)
PAGE: Final = 1000


def item_rows(
    engine: Engine,
    organization_id: UUID,
    job_id: UUID,
    *,
    status: str | None = None,
    error_code: str | None = None,
) -> Iterator[str]:
    """The header line, then one CSV line per item in plan order. `NotFound` before the first line
    for a job the organization cannot see."""
    out = io.StringIO()
    writer = csv.writer(out)

    def line(values: tuple[object, ...]) -> str:
        out.seek(0)
        out.truncate()
        writer.writerow(values)
        return out.getvalue()

    first = bulk.list_items(engine, organization_id, job_id, after_seq=None, limit=PAGE, status=status,
                            error_code=error_code)  # fmt: skip
    yield line(COLUMNS)
    page = first
    while True:
        for i in page.rows:
            yield line((
                i.seq, i.recipient, i.status, i.message_id or "", i.wamid or "", i.error_code or "",
                i.error_title or "", i.settled_at.isoformat() if i.settled_at else "",
            ))  # fmt: skip
        if page.next_after is None:
            return
        page = bulk.list_items(engine, organization_id, job_id, after_seq=page.next_after, limit=PAGE,
                               status=status, error_code=error_code)  # fmt: skip
