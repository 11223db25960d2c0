"""Actor modules. Import order does not matter; the broker is set before this package loads."""

from workers.actors import billing, inbound, media, outbound

__all__ = ["billing", "inbound", "media", "outbound"]
