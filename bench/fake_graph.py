"""The fake Graph API in a process of its own, for the outbound benchmarks."""

from __future__ import annotations

import sys

import httpx

from devkit.processes import Process, free_port


def start_fake_graph() -> tuple[Process, str]:
    """The running fake and its base URL; the caller stops it."""
    url = f"http://127.0.0.1:{free_port()}"
    port = url.rpartition(":")[2]
    fake = Process("fake-graph", [sys.executable, "-m", "workers.cli.main", "fake-graph", "--port", port])
    fake.start()
    try:
        fake.wait_ready(lambda: _up(url), 30)
    except BaseException:
        fake.stop()
        raise
    return fake, url


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_fake/faults", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
