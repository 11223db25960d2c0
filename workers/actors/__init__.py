"""Actor modules. Import order does not matter; the broker is set before this package loads."""

import workers.actors.billing  # noqa: F401
from workers.actors import inbound, media

__all__ = ["inbound", "media"]
