"""Settings for an ingress under test."""

from __future__ import annotations

from urllib.parse import urlsplit

from config.settings import Settings, get_settings
from tests.integration.ingress.support import (
    STRIPE_SECRET,
    VERIFY_TOKEN,
    WHATSAPP_OLD_SECRET,
    WHATSAPP_SECRET,
)


def make_settings(rabbitmq_url: str, **overrides: object) -> Settings:
    # Readiness only needs a reachable server: the maintenance database always exists.
    database_url = urlsplit(get_settings().database_url)._replace(path="/postgres").geturl()
    values: dict[str, object] = {
        "rabbitmq_url": rabbitmq_url,
        "database_url": database_url,
        "whatsapp_app_secret": f"{WHATSAPP_SECRET},{WHATSAPP_OLD_SECRET}",
        "whatsapp_verify_token": VERIFY_TOKEN,
        "stripe_webhook_secret": f"whsec_other,{STRIPE_SECRET}",
        "publish_timeout_seconds": 2.0,
        "rabbitmq_reconnect_interval_seconds": 0.2,
        "readiness_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
