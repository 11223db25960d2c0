"""Dramatiq's wire format, written without Dramatiq so the publish stays on the event loop.

A Dramatiq worker decodes this with its default JSONEncoder and calls
`<actor>(body, received_at=..., request_id=...)`; the body travels as the exact request text.
"""

from __future__ import annotations

import time

import orjson


def encode_message(
    *,
    queue_name: str,
    actor_name: str,
    body: str,
    received_at: float,
    request_id: str,
    message_id: str,
    trace_context: dict[str, str] | None = None,
) -> bytes:
    return orjson.dumps(
        {
            "queue_name": queue_name,
            "actor_name": actor_name,
            "args": [body],
            "kwargs": {"received_at": received_at, "request_id": request_id},
            "options": {"trace_context": trace_context} if trace_context else {},
            "message_id": message_id,
            "message_timestamp": int(time.time() * 1000),
        }
    )
