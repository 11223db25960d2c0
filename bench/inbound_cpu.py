"""CPU per inbound delivery, without the broker: one thread runs `process_delivery` on N decoded
deliveries (half single messages, half batches of 5) against a database of its own, and reports
the Python CPU of this process and the CPU of its Postgres backend per delivery. No broker, no
other load: the figure to compare two versions by, run in alternation (CPU time on a shared machine
still varies by a third from hour to hour).

    .venv/bin/python -m bench.inbound_cpu [--deliveries 3000] [--history 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from bench.history import bench_database_url, create_tenants, seed_history


def _backend_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--history", type=int, default=20_000, help="messages already stored per tenant")
    args = parser.parse_args()

    from config import get_settings
    from db import admin
    from db.engine import create_db_engine
    from devkit import whatsapp as wa
    from devkit.jobs import RecordingPublisher
    from services.number_routes import RouteCache
    from workers.inbound.decode import decode_delivery
    from workers.inbound.delivery import Deps, process_delivery

    os.environ["DATABASE_URL"] = bench_database_url()
    get_settings.cache_clear()
    settings = get_settings()
    admin.upgrade(settings)
    try:
        # As the workers run it: one pooled connection per thread, no ping on checkout.
        engine = create_db_engine(settings, pool_size=1, pre_ping=False)
        [(_, pnid)] = create_tenants(engine, 1)
        owner = create_db_engine(settings, pool_size=1, as_app_role=False)
        seed_history(owner, args.history)
        owner.dispose()
        deps = Deps(engine, RecordingPublisher(), RouteCache(engine), None)

        def deliveries(tag: str, count: int) -> list[Any]:
            out = []
            for i in range(count):
                sender = f"1{(i * 7919) % 10_000_000_000:010d}"[:11]
                items = [
                    wa.text(sender, f"{tag} {i}.{k} hello \u00e9", id_=f"wamid.{tag}.{i}.{k}")
                    for k in range(5 if i % 2 else 1)
                ]
                out.append(decode_delivery(wa.encode(wa.delivery(wa.change(pnid, messages=items)))))
            return out

        for delivery in deliveries("warm", args.warmup):
            process_delivery(delivery, time.time(), deps)
        measured = deliveries("run", args.deliveries)
        with engine.connect() as conn:
            backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        cpu, pg, wall = time.process_time(), _backend_cpu_seconds(backend), time.perf_counter()
        for delivery in measured:
            process_delivery(delivery, time.time(), deps)
        n = args.deliveries
        report = {
            "command": "python -m bench.inbound_cpu " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
            "deliveries": n,
            "messages_per_delivery": 3,
            "python_cpu_us_per_delivery": round((time.process_time() - cpu) / n * 1e6),
            "postgres_cpu_us_per_delivery": round((_backend_cpu_seconds(backend) - pg) / n * 1e6),
            "wall_us_per_delivery": round((time.perf_counter() - wall) / n * 1e6),
        }
        engine.dispose()
        print(json.dumps(report, indent=2))
    finally:
        admin.drop_database(settings)


if __name__ == "__main__":
    main()
