"""A whole fleet as the Procfile runs it (ingress launcher, worker groups, scheduler), each process
on metrics ports of the test's choosing, and a real Prometheus scraping them with the deploy config."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devkit.processes import ROOT, Process, consumers, free_port, wait_for

DEPLOY = ROOT / "deploy" / "prometheus"
# The worker groups the Procfile runs, with the processes each gets in the test: two for inbound,
# so that its endpoint has to sum over processes.
GROUPS: dict[str, tuple[str, int]] = {"inbound": ("inbound", 2), "outbound": ("outbound", 1),
                                      "billing": ("billing", 1)}  # fmt: skip
DEFAULT_PORTS = {"web": 9190, "inbound": 9191, "outbound": 9192, "billing": 9194, "scheduler": 9196}


@dataclass
class Fleet:
    url: str  # the ingress's public URL
    metrics: dict[str, str]  # job -> metrics URL
    processes: dict[str, Process] = field(default_factory=dict)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{p.log()[-2000:]}" for name, p in self.processes.items())


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_fleet(env: dict[str, str], web_concurrency: int = 2) -> Iterator[Fleet]:
    ports = {job: free_port() for job in DEFAULT_PORTS}
    metrics_dir = tempfile.mkdtemp(prefix="adsapp-metrics-")
    common = {
        **env,
        "METRICS_HOST": "127.0.0.1",
        "METRICS_DIR": metrics_dir,
        "INGRESS_METRICS_PORT": str(ports["web"]),
        "SCHEDULER_METRICS_PORT": str(ports["scheduler"]),
        "WEB_CONCURRENCY": str(web_concurrency),
        "FLEET_GAUGES_INTERVAL_SECONDS": "0.5",
        **{f"{group.upper()}_METRICS_PORT": str(ports[group]) for group in GROUPS},
    }
    web_port = free_port()
    fleet = Fleet(
        f"http://127.0.0.1:{web_port}", {job: f"http://127.0.0.1:{p}/metrics" for job, p in ports.items()}
    )
    with ExitStack() as stack:

        def start(name: str, argv: list[str], extra: dict[str, str] | None = None) -> Process:
            process = Process(name, argv, {**common, **(extra or {})}).start()
            fleet.processes[name] = process
            stack.callback(process.stop)
            return process

        web = start(
            "web", [sys.executable, "-m", "ingress.run", "--host", "127.0.0.1", "--port", str(web_port)]
        )
        for group, (queue, processes) in GROUPS.items():
            start(group, [sys.executable, "-m", "workers.run", group],
                  {"WORKER_PROCESSES": str(processes), "WORKER_THREADS": "2"})  # fmt: skip
        start("scheduler", [sys.executable, "-m", "workers.scheduler"])
        web.wait_ready(lambda: _answers(f"{fleet.url}/readyz") and _answers(fleet.metrics["web"]), 60)
        for group, (queue, processes) in GROUPS.items():
            fleet.processes[group].wait_ready(
                lambda q=queue, n=processes, g=group: (
                    consumers(q, env["RABBITMQ_URL"]) >= n and _answers(fleet.metrics[g])
                ),
                90,
            )
        fleet.processes["scheduler"].wait_ready(
            lambda: "adsapp_queue_consumers" in _text(fleet.metrics["scheduler"]), 60
        )
        yield fleet
    shutil.rmtree(metrics_dir, ignore_errors=True)


def _text(url: str) -> str:
    try:
        return httpx.get(url, timeout=2.0).text
    except httpx.HTTPError:
        return ""


def templated_config(directory: Path, metrics: dict[str, str], interval: str = "1s") -> Path:
    """deploy/prometheus/prometheus.yml with the test's ports and a short scrape interval."""
    text = (DEPLOY / "prometheus.yml").read_text()
    for job, port in DEFAULT_PORTS.items():
        target = metrics[job].removeprefix("http://").removesuffix("/metrics")
        text, replaced = re.subn(rf'"127\.0\.0\.1:{port}"', f'"{target}"', text)
        assert replaced == 1, f"no target for {job} on port {port} in prometheus.yml"
    text = re.sub(r"(scrape_interval|evaluation_interval): \S+", rf"\1: {interval}", text)
    shutil.copy(DEPLOY / "alerts.yml", directory / "alerts.yml")
    path = directory / "prometheus.yml"
    path.write_text(text)
    return path


@dataclass
class RunningPrometheus:
    url: str
    process: Process

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5).json()
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        """The single value of `expr` (0 when it has no series yet)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else 0.0

    def targets(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"][
            "activeTargets"
        ]
        return data


@contextmanager
def running_prometheus(metrics: dict[str, str]) -> Iterator[RunningPrometheus]:
    directory = Path(tempfile.mkdtemp(prefix="adsapp-prometheus-"))
    config = templated_config(directory, metrics)
    port = free_port()
    process = Process(
        "prometheus",
        [
            shutil.which("prometheus") or "/usr/bin/prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_ready(lambda: _answers(f"{url}/-/ready"), 60)
        yield RunningPrometheus(url, process)
    finally:
        process.stop()
        shutil.rmtree(directory, ignore_errors=True)


def wait_value(prometheus: RunningPrometheus, expr: str, expected: float, timeout: float = 60) -> float:
    """Wait until `expr` equals `expected` in Prometheus; the last value seen either way."""
    seen = [prometheus.value(expr)]

    def reached() -> bool:
        seen[0] = prometheus.value(expr)
        return seen[0] == expected

    wait_for(reached, timeout, interval=0.25)
    return seen[0]
