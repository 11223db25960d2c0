"""Adapters to the WhatsApp Cloud API (Graph API): client, fleet-wide breakers and pacing.

Build each once per process at boot and share it between threads:

    client = GraphClient.from_settings(settings)
    breakers = BreakerRegistry(redis_bytes_client)       # decode_responses=False
    pacer = Pacer(redis_client)

and per send: `pacer.wait_for_token(...)`, then `breakers.call(phone_number_id, lambda:
client.send_message(...))`.
"""

from workers.graph.breaker import BreakerPolicy, BreakerRegistry
from workers.graph.client import GraphClient
from workers.graph.models import MediaInfo, SendResult
from workers.graph.pacing import Pacer

__all__ = ["BreakerPolicy", "BreakerRegistry", "GraphClient", "MediaInfo", "Pacer", "SendResult"]
