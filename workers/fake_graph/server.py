"""Running the fake Graph API as a process (`adsapp fake-graph`)."""

from __future__ import annotations

import uvicorn

from config.settings import get_settings
from workers.fake_graph.app import create_app


def serve(port: int | None = None, host: str = "127.0.0.1") -> None:
    """Serve until SIGTERM/SIGINT on `port` (FAKE_GRAPH_PORT, 8900 by default)."""
    uvicorn.run(
        create_app(),
        host=host,
        port=get_settings().fake_graph_port if port is None else port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
