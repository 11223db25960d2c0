"""Live inbox updates on Redis pub/sub, channel `org:<organization_id>`; best effort by design."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

import orjson
import redis


def channel_for(organization_id: UUID | str) -> str:
    return f"org:{organization_id}"


class RedisRealtime:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def publish(self, channel: str, payload: Mapping[str, Any]) -> None:
        self._redis.publish(channel, orjson.dumps(payload))

    def publish_many(self, channel: str, payloads: Iterable[Mapping[str, Any]]) -> None:
        """One round trip for a change's events."""
        pipe = self._redis.pipeline(transaction=False)
        for payload in payloads:
            pipe.publish(channel, orjson.dumps(payload))
        pipe.execute()
