"""Start one worker group: `python -m workers.run inbound`.

Each group is a line of the Procfile so it scales on its own. This prepares what Dramatiq's
Prometheus exposition needs per group (a clean multiprocess directory and a port of its own, the
usual causes of stale or clashing metrics) and then becomes the `dramatiq` command.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Group:
    queues: tuple[str, ...]
    processes: int
    threads: int
    metrics_port: int


GROUPS: dict[str, Group] = {
    "inbound": Group(("inbound", "media"), processes=2, threads=8, metrics_port=9191),
    "outbound": Group(("outbound",), processes=1, threads=16, metrics_port=9192),
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
    root = Path(env.get("METRICS_DIR", "var/prometheus")) / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(root)
    env["dramatiq_prom_db"] = str(root)
    env.setdefault("dramatiq_prom_port", str(group.metrics_port))
    env.setdefault("dramatiq_prom_host", "127.0.0.1")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in GROUPS:
        sys.exit(f"usage: python -m workers.run {{{'|'.join(GROUPS)}}}")
    env = dict(os.environ)
    prepare_metrics(args[0], env)
    cmd = command(args[0], env)
    os.execvpe(cmd[0], cmd, env)  # noqa: S606  (becomes the dramatiq supervisor; signals go straight to it)


if __name__ == "__main__":
    main()
