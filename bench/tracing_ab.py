"""A/B of the tracing hooks switched off: this tree against a baseline git ref (default `main`),
alternating in one run, so the figure and its ceiling share the machine's state of the moment.

    .venv/bin/python -m bench.tracing_ab [--baseline main] [--rounds 3] [--duration 10]
                                         [--deliveries 4000]

- ingress: wrk on the webhook route (signed ~2 KB deliveries, durable publish with confirms) against
  `uvicorn --factory bench.ingress_app:create` run from each tree in turn;
- inbound: a backlog of `--deliveries` deliveries queued by the ingress, then drained by
  `dramatiq workers.app` run from each tree in turn; messages/s over the drain's commits.
Both trees run with OTEL_EXPORTER_OTLP_ENDPOINT unset, as shipped. Prints JSON with each round's
figures, the medians and `ratio` = this tree / baseline (1.0 = no cost; the target is ≥ 0.97).
Needs wrk (apt-get install -y wrk). The baseline is checked out as a temporary git worktree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.history import bench_database_url, create_tenants  # noqa: E402
from bench.inbound import SECRET as INBOUND_SECRET  # noqa: E402
from bench.inbound import _deliveries, _request, _wait_count, _window  # noqa: E402
from bench.ingress import PATH, UVICORN_FLAGS, free_port, run_wrk, signed_bodies, wrk_script  # noqa: E402
from bench.paced_load import run_paced  # noqa: E402


@contextmanager
def baseline_tree(ref: str) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="adsapp-baseline-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(directory), ref], check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield directory
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(directory)], check=False)
        shutil.rmtree(directory, ignore_errors=True)


def _env(tree: Path, base: dict[str, str]) -> dict[str, str]:
    # The tree's own packages first: the shared virtualenv's editable install points at this tree.
    env = {**base, "PYTHONPATH": str(tree)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return env


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited during start-up")
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {timeout} s")


@contextmanager
def ingress(tree: Path, env: dict[str, str], workers: int = 1) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "bench.ingress_app:create", "--host",
               "127.0.0.1", "--port", str(port), "--workers", str(workers), *UVICORN_FLAGS]  # fmt: skip
    metrics = tempfile.mkdtemp(prefix="adsapp-ab-web-")
    run_env = _env(tree, env)
    if tree == ROOT:
        # As `python -m ingress.run` runs it: its workers' metrics in a multiprocess directory.
        run_env["PROMETHEUS_MULTIPROC_DIR"] = metrics
    process = subprocess.Popen(command, cwd=tree, env=run_env)
    try:
        _wait_http(f"http://127.0.0.1:{port}/readyz", process)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(20)
        shutil.rmtree(metrics, ignore_errors=True)


@contextmanager
def worker(tree: Path, env: dict[str, str], processes: int, threads: int) -> Iterator[None]:
    metrics = tempfile.mkdtemp(prefix="adsapp-ab-prom-")
    command = [sys.executable, "-m", "dramatiq", "workers.app", "--processes", str(processes),
               "--threads", str(threads), "--queues", "inbound", "media"]  # fmt: skip
    prom = {"PROMETHEUS_MULTIPROC_DIR": metrics, "dramatiq_prom_db": metrics,
            "dramatiq_prom_port": str(free_port())}  # fmt: skip
    process = subprocess.Popen(command, cwd=tree, env={**_env(tree, env), **prom})
    try:
        yield
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(metrics, ignore_errors=True)


def ingress_round(tree: Path, env: dict[str, str], script: Path, args: argparse.Namespace) -> float:
    with ingress(tree, env, args.web_workers) as (host, port):
        url = f"http://{host}:{port}{PATH}"
        run_wrk(url, script, 1, args.connections, 1)
        return float(run_wrk(url, script, args.duration, args.connections, 1)["rps"])


def inbound_round(
    tree: Path, env: dict[str, str], engine: Any, numbers: list[str], tag: str, args: argparse.Namespace
) -> float:
    with ingress(ROOT, env) as (host, port):
        bodies, total = _deliveries(numbers, args.deliveries, tag)
        requests = [_request(host, port, body) for body in bodies]
        asyncio.run(run_paced(host, port, requests, 1500.0, len(requests) / 1500.0, connections=64))
    with worker(tree, env, args.processes, args.threads):
        if not _wait_count(engine, tag, total, 600):
            raise RuntimeError(f"drain {tag} did not complete")
    return float(_window(engine, tag)["messages_per_s"] or 0.0)


def _summary(a: list[float], b: list[float]) -> dict[str, Any]:
    base, this = statistics.median(a), statistics.median(b)
    return {"baseline": a, "this_tree": b, "median_baseline": base, "median_this_tree": this,
            "ratio": round(this / base, 3) if base else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--deliveries", type=int, default=4000, help="per inbound drain")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--skip-inbound", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/tracing_ab.py needs wrk on PATH: apt-get install -y wrk")

    from config import get_settings
    from db import admin
    from db.engine import create_db_engine
    from devkit.services import rabbitmq_vhost

    report: dict[str, Any] = {"baseline_ref": args.baseline, "rounds": args.rounds, "cores": os.cpu_count()}
    with (
        baseline_tree(args.baseline) as base,
        tempfile.TemporaryDirectory() as tmp,
        rabbitmq_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")) as amqp,
    ):
        os.environ.update({"DATABASE_URL": bench_database_url(), "RABBITMQ_URL": amqp,
                           "WHATSAPP_APP_SECRET": INBOUND_SECRET, "LOG_LEVEL": "WARNING"})  # fmt: skip
        get_settings.cache_clear()
        settings = get_settings()
        admin.upgrade(settings)
        engine = create_db_engine(settings, pool_size=2, as_app_role=False)
        try:
            env = dict(os.environ)
            # The ingress run needs no database; the maintenance one is always there.
            maintenance_db = urlsplit(settings.database_url)._replace(path="/postgres").geturl()
            web_env = {**env, "DATABASE_URL": maintenance_db}
            script = wrk_script(signed_bodies(256), Path(tmp))
            trees = [(base, "baseline"), (ROOT, "this_tree")]
            web: dict[str, list[float]] = {"baseline": [], "this_tree": []}
            inbound: dict[str, list[float]] = {"baseline": [], "this_tree": []}
            numbers = [pnid for _, pnid in create_tenants(create_db_engine(settings, pool_size=1), 4)]
            for i in range(args.rounds):
                # ABBA: each tree goes first as often as the other.
                for tree, name in trees if i % 2 == 0 else trees[::-1]:
                    web[name].append(ingress_round(tree, web_env, script, args))
                    if not args.skip_inbound:
                        tag = f"ab{i}{name[0]}"
                        inbound[name].append(inbound_round(tree, env, engine, numbers, tag, args))
            report["ingress_webhooks_per_s"] = _summary(web["baseline"], web["this_tree"])
            if not args.skip_inbound:
                report["inbound_drain_messages_per_s"] = _summary(inbound["baseline"], inbound["this_tree"])
        finally:
            engine.dispose()
            admin.drop_database(settings)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
