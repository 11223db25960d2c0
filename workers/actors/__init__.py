"""Actor modules. Import order does not matter; the broker is set before this package loads."""

from workers.actors import billing, bulk, inbound, media, outbound

__all__ = ["billing", "bulk", "inbound", "media", "outbound"]
