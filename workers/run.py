"""Start one worker group: `python -m workers.run inbound`.

Each group is a line of the Procfile so it scales on its own. This prepares what Dramatiq's
Prometheus exposition needs per group (a clean multiprocess directory and a port of its own, the
usual causes of stale or clashing metrics) and then becomes the `dramatiq` command.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from services.telemetry.exposition import prepare_multiprocess_dir


@dataclass(frozen=True)
class Group:
    queues: tuple[str, ...]
    processes: int
    threads: int
    metrics_port: int


GROUPS: dict[str, Group] = {
    "inbound": Group(("inbound", "media"), processes=2, threads=8, metrics_port=9191),
    # Each thread waits on one send of the process's event loop: threads = sends in flight
    # (OUTBOUND_IN_FLIGHT), 2 × 256 serve a 1,000-mps number at Meta's ~250 ms.
    "outbound": Group(("outbound",), processes=2, threads=256, metrics_port=9192),
    "bulk": Group(("bulk",), processes=1, threads=4, metrics_port=9193),
    "billing": Group(("billing",), processes=1, threads=2, metrics_port=9194),
}


def command(name: str, env: dict[str, str]) -> list[str]:
    group = GROUPS[name]
    processes = env.get("WORKER_PROCESSES", str(group.processes))
    threads = env.get("WORKER_THREADS", str(group.threads))
    return [
        sys.executable, "-m", "dramatiq", "workers.app",
        "--processes", processes, "--threads", threads,
        "--queues", *group.queues,
    ]  # fmt: skip


def prepare_metrics(name: str, env: dict[str, str]) -> None:
    group = GROUPS[name]
    root = prepare_multiprocess_dir(Path(env.get("METRICS_DIR", "var/prometheus")) / name, env)
    env["dramatiq_prom_db"] = str(root)
    # `<GROUP>_METRICS_PORT` (INBOUND_METRICS_PORT, ...) or Dramatiq's own variable moves the port.
    port = env.get(f"{name.upper()}_METRICS_PORT") or env.get("dramatiq_prom_port") or str(group.metrics_port)
    env["dramatiq_prom_port"] = port
    env["dramatiq_prom_host"] = env.get("METRICS_HOST") or env.get("dramatiq_prom_host") or "127.0.0.1"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in GROUPS:
        sys.exit(f"usage: python -m workers.run {{{'|'.join(GROUPS)}}}")
    env = dict(os.environ)
    prepare_metrics(args[0], env)
    if args[0] == "outbound":
        # Deferred and retried sends wait unacked in the worker until their ETA (minutes at most,
        # far under RabbitMQ's consumer timeout); Dramatiq's default of threads × 1000 would let a
        # deferred campaign pile up to 65,535 of them in each process's memory.
        env.setdefault("dramatiq_delay_queue_prefetch", "10000")
    cmd = command(args[0], env)
    os.execvpe(cmd[0], cmd, env)  # noqa: S606  (becomes the dramatiq supervisor; signals go straight to it)


if __name__ == "__main__":
    main()
