"""Serving one process group's Prometheus metrics on an internal port of its own.

A group of processes (uvicorn's workers, Dramatiq's worker processes) writes its metrics into one
prometheus_client multiprocess directory, and one server per group reads them all, so a scrape
sees the group's sum. The directory is wiped at each start (files of an earlier run would be
added to this one's), and at each scrape the live-gauge files of processes that are gone are
removed (a killed process never calls `mark_process_dead` itself). Counter and histogram files of
dead processes are kept: their counts are part of the group's totals, which must never go back.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from collections.abc import Iterable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.exposition import MetricsHandler
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
_PID_FILE: Final = re.compile(r"_(\d+)\.db$")


def prepare_multiprocess_dir(root: Path, env: dict[str, str] | None = None) -> Path:
    """Empty `root` (made if missing) and name it in `env` (os.environ by default) for child processes."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    target = os.environ if env is None else env
    target[MULTIPROC_ENV] = str(root)
    return root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def prune_dead(directory: Path) -> list[int]:
    """Drop the live gauges of every process that no longer runs; the pids pruned."""
    # Only live gauges are per-process state to drop; counters of dead processes stay counted.
    pids = {int(m.group(1)) for p in directory.glob("gauge_live*.db") if (m := _PID_FILE.search(p.name))}
    dead = sorted(pid for pid in pids if not _alive(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return dead


class _GroupCollector(Collector):
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._collector = multiprocess.MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        prune_dead(self._directory)
        metrics: Iterable[Metric] = self._collector.collect()  # type: ignore[no-untyped-call]
        return metrics


def group_registry(directory: Path, extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """A registry that reads the whole group's multiprocess directory, pruned at each scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_GroupCollector(directory))
    for collector in extra:
        registry.register(collector)
    return registry


class MetricsServer:
    """`/metrics` of one registry on host:port, served from a daemon thread until `close()`."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        handler = MetricsHandler.factory(registry)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown()
            self._server.server_close()
