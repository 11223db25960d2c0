"""The customer's current reaction, kept on the message it targets (see `workers.inbound.reactions`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from db.repos.inbound.runner import run

# The latest reaction per target wins; ties in Meta's one-second timestamps go to the one received
# last (`ord`). A removed reaction keeps its time, so an older one arriving late cannot return.
_APPLY = """
UPDATE messages t SET reaction_emoji = r.emoji, reaction_at = to_timestamp(r.ts), updated_at = now()
FROM (
    SELECT DISTINCT ON (target) target, emoji, ts
    FROM unnest(%(targets)s::text[], %(emojis)s::text[], %(ts)s::bigint[]) WITH ORDINALITY
         AS x(target, emoji, ts, ord)
    ORDER BY target, ts DESC, ord DESC
) r
WHERE t.wamid = r.target AND (t.reaction_at IS NULL OR t.reaction_at <= to_timestamp(r.ts))
RETURNING t.id, t.wamid, t.reaction_emoji
"""


def apply(
    conn: Connection, targets: Sequence[str], emojis: Sequence[str | None], timestamps: Sequence[int]
) -> list[Any]:
    """Rows (`id`, `wamid`, `reaction_emoji`) of each target that changed; the reactions in the
    order received."""
    return run(conn, _APPLY, {"targets": list(targets), "emojis": list(emojis), "ts": list(timestamps)}).all()
