"""A group's multiprocess directory: wiped per start, summed over processes, dead processes pruned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from services.telemetry.exposition import MetricsServer, group_registry, prepare_multiprocess_dir, prune_dead

WRITER = """
from prometheus_client import Counter, Gauge
Counter("adsapp_test_jobs", "jobs").inc({n})
Gauge("adsapp_test_busy", "busy", multiprocess_mode="livesum").set(1)
"""


def _write(directory: Path, n: int) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", WRITER.format(n=n)], env=env, check=True)


def test_prepare_wipes_an_earlier_run(tmp_path: Path) -> None:
    root = tmp_path / "web"
    root.mkdir()
    (root / "counter_1.db").write_bytes(b"stale")
    env: dict[str, str] = {}
    assert prepare_multiprocess_dir(root, env) == root
    assert list(root.iterdir()) == []
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(root)


def test_group_sums_processes_and_prunes_the_dead(tmp_path: Path) -> None:
    prepare_multiprocess_dir(tmp_path, {})
    _write(tmp_path, 2)
    _write(tmp_path, 3)  # both writers have exited: their live gauges must go, their counts stay
    assert len(list(tmp_path.glob("gauge_livesum_*.db"))) == 2
    server = MetricsServer(group_registry(tmp_path), "127.0.0.1", 0).start()
    try:
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    finally:
        server.close()
    assert "adsapp_test_jobs_total 5.0" in text
    assert "adsapp_test_busy" not in text.replace("# HELP adsapp_test_busy", "").replace(
        "# TYPE adsapp_test_busy", ""
    )
    assert list(tmp_path.glob("gauge_livesum_*.db")) == []
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    assert prune_dead(tmp_path) == []  # nothing left to prune
