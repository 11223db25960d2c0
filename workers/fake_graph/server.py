"""Running the fake Graph API as a process (`adsapp fake-graph`)."""

from __future__ import annotations

import uvicorn

from config.settings import get_settings
from workers.fake_graph.app import create_app
from workers.fake_graph.state import FakeConfig


def serve(port: int | None = None, host: str = "127.0.0.1", webhook_url: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT on `port` (FAKE_GRAPH_PORT, 8900 by default).

    With `webhook_url` (the ingress's /webhooks/whatsapp), every accepted send is followed by its
    sent, delivered and read status webhooks, signed with the first WHATSAPP_APP_SECRET.
    """
    settings = get_settings()
    config = FakeConfig()
    if webhook_url:
        config.webhook_url = webhook_url
        config.app_secret = settings.whatsapp_app_secret[0].get_secret_value()
    uvicorn.run(
        create_app(config),
        host=host,
        port=settings.fake_graph_port if port is None else port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
