"""Dramatiq's JSON message format, decoded by orjson.

Decoding is on every delivery's path through the consumer thread, where the standard library's
parser was a tenth of that thread's time. Messages are still written by Dramatiq's own
`JSONEncoder` (and by the ingress with orjson): the format on the wire does not change, so workers
of either kind read each other's messages. What orjson refuses (a lone surrogate escaped in a
string, NaN, bytes that are not UTF-8) goes to the standard library's parser, which decides as
before. One difference remains: orjson reads an integer beyond 64 bits as a float; no actor takes
one (ids travel as strings, amounts and timestamps fit in 64 bits).
"""

from __future__ import annotations

import orjson
from dramatiq.encoder import JSONEncoder, MessageData


class OrjsonDecodingEncoder(JSONEncoder):
    def decode(self, data: bytes) -> MessageData:
        try:
            decoded: MessageData = orjson.loads(data)
        except orjson.JSONDecodeError:
            return super().decode(data)
        return decoded
