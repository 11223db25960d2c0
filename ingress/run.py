"""Start the ingress: `python -m ingress.run --host 0.0.0.0 --port $PORT`.

Runs `WEB_CONCURRENCY` uvicorn workers on the public port and, in this (supervising) process, the
metrics of all of them summed on `METRICS_HOST:INGRESS_METRICS_PORT`, an internal port: the
public app serves no /metrics. The workers write into a multiprocess directory wiped at each start.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from config.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ingress.run")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $PORT")
    args = parser.parse_args(argv)
    settings = get_settings()
    # Before anything imports prometheus_client: it picks its value storage at import time.
    from services.telemetry.exposition import MetricsServer, group_registry, prepare_multiprocess_dir

    directory = prepare_multiprocess_dir(Path(settings.metrics_dir) / "web")
    server = MetricsServer(group_registry(directory), settings.metrics_host, settings.ingress_metrics_port)
    server.start()
    import uvicorn

    try:
        uvicorn.run(
            "ingress.app:app",
            host=args.host,
            port=args.port if args.port is not None else settings.port,
            workers=settings.web_concurrency,
            loop="uvloop",
            http="httptools",
            access_log=False,
            timeout_graceful_shutdown=10,
            backlog=2048,
        )
    finally:
        server.close()


if __name__ == "__main__":
    main()
