"""The customer's current reaction, kept on the message it targets.

Every reaction is stored as a message row of its own (type `reaction`, `text` = the emoji,
`context_wamid` = the target), so the history is complete. The target's `reaction_emoji` and
`reaction_at` hold the latest one: a later reaction replaces it, an empty one clears it (the time
stays, so an older reaction arriving late cannot bring a removed one back). Ties in Meta's
one-second timestamps go to the reaction received last.

When the target is not stored yet (the send path has not recorded its wamid), nothing is lost:
`statuses.CATCH_UP` sets it from the newest reaction row when the wamid appears.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from domain.whatsapp import InboundMessage
from workers.inbound.params import run

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


def apply_reactions(conn: Connection, reactions: Sequence[InboundMessage]) -> list[tuple[str, str | None]]:
    """(target wamid, emoji now shown) for each target that changed."""
    found = [m for m in reactions if m.reaction is not None]
    if not found:
        return []
    rows = run(
        conn,
        _APPLY,
        {
            "targets": [m.reaction.target_wamid for m in found if m.reaction],
            "emojis": [m.reaction.emoji for m in found if m.reaction],
            "ts": [m.timestamp for m in found],
        },
    ).all()
    return [(r.wamid, r.reaction_emoji) for r in rows]
