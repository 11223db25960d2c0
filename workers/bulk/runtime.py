"""The bulk use cases' ports in one worker process, built from the process's resources."""

from __future__ import annotations

from services.bulk_run import RunPorts
from workers import resources
from workers.inbound.realtime import RedisRealtime


def _ports(current: resources.Resources) -> RunPorts:
    return RunPorts(current.engine, current.jobs, RedisRealtime(current.redis))


ports = resources.per_process(_ports)
