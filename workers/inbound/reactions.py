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

from db.repos.inbound import reactions as repo
from domain.whatsapp import InboundMessage


def apply_reactions(conn: Connection, reactions: Sequence[InboundMessage]) -> list[tuple[str, str | None]]:
    """(target wamid, emoji now shown) for each target that changed."""
    found = [m for m in reactions if m.reaction is not None]
    if not found:
        return []
    rows = repo.apply(
        conn,
        [m.reaction.target_wamid for m in found if m.reaction],
        [m.reaction.emoji for m in found if m.reaction],
        [m.timestamp for m in found],
    )
    return [(r.wamid, r.reaction_emoji) for r in rows]
