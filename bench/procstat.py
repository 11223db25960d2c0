"""CPU and memory of processes from /proc, for the benchmarks' per-send figures."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import redis

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICK


def children(pid: int) -> list[int]:
    """Every live descendant of `pid` (a dramatiq command's worker processes, and theirs)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def named(comm: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def postgres_cpu() -> dict[int, float]:
    """CPU of every Postgres process (backends come and go: keyed by pid). The server is the
    machine's, so other clients' work is counted too."""
    return {pid: cpu_seconds(pid) for pid in named("postgres")}


def redis_cpu(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Samples the resident memory of a process's descendants every `interval` seconds."""

    def __init__(self, root: int, interval: float = 1.0) -> None:
        self._root = root
        self._interval = interval
        self._stop = threading.Event()
        self.samples: dict[int, list[float]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for pid in children(self._root):
                self.samples.setdefault(pid, []).append(round(rss_mb(pid), 1))

    def stop(self) -> dict[str, Any]:
        """Per worker process: peak (the kernel's high-water mark), first and last sample."""
        peaks = {pid: round(rss_mb(pid, "VmHWM"), 1) for pid in children(self._root)}
        self._stop.set()
        self._thread.join()
        return {
            str(pid): {"peak_mb": peaks.get(pid, max(s)), "first_mb": s[0], "last_mb": s[-1]}
            for pid, s in self.samples.items()
            if s
        }
