"""Inbound benchmark: signed deliveries through the running stack (uvicorn ingress → RabbitMQ →
`dramatiq workers.app` → Postgres), in a database and vhost of its own.

    .venv/bin/python -m bench.inbound [--deliveries 12000] [--processes 2] [--threads 8]

Prints JSON with:
- baselines, on a default Dramatiq broker draining pre-queued messages: a no-op actor, and an
  actor doing one Postgres `INSERT ... ON CONFLICT` (one commit) per message, the two drains the
  reference machine's figures name (bench/reference.py);
- sustained: deliveries (half single messages, half batches of 5) posted as fast as the ingress
  takes them while the worker runs; messages/s = messages committed / (last commit - first commit);
- steady_500: an open-loop 500 messages/s for `--steady-seconds`; latency per message = the row's
  insert time (clock_timestamp(), under a millisecond before its commit) - the ingress's receipt
  time (`received_at`), as p50/p95/p99 in ms;
- backlog_drain: the workers' own capacity, draining a backlog queued while they were stopped;
- throughput_target: the 2,000 messages/s target, raw and scaled by each of this run's baselines
  against the reference machine's (see bench/reference.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from bench.history import bench_database_url, create_tenants, seed_history
from bench.paced_load import percentile, run_paced
from bench.reference import INSERT_DRAIN_PER_S, NOOP_DRAIN_PER_S, scaled_target

SECRET = "bench-app-secret"


def _deliveries(phone_numbers: list[str], count: int, tag: str) -> tuple[list[bytes], int]:
    from devkit import whatsapp as wa

    bodies, messages = [], 0
    for i in range(count):
        pn = phone_numbers[i % len(phone_numbers)]
        sender = f"1{(i * 7919) % 10_000_000_000:010d}"[:11]
        size = 5 if i % 2 else 1
        items = [
            wa.text(sender, f"{tag} {i}.{k} hello \u00e9\U0001f600", id_=f"wamid.{tag}.{i}.{k}")
            for k in range(size)
        ]
        messages += size
        bodies.append(wa.encode(wa.delivery(wa.change(pn, messages=items))))
    return bodies, messages


def _request(host: str, port: int, body: bytes) -> bytes:
    from devkit import whatsapp as wa

    return (
        f"POST /webhooks/whatsapp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"X-Hub-Signature-256: {wa.sign(body, SECRET)}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _count(engine: sa.Engine, tag: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                # A range on the wamid index: polled while the workers run, so it must not scan the table.
                sa.text("SELECT count(*) FROM messages WHERE wamid >= :lo AND wamid < :hi"),
                {"lo": f"wamid.{tag}.", "hi": f"wamid.{tag}/"},
            ).scalar_one()
        )


def _wait_count(engine: sa.Engine, tag: str, expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count(engine, tag) >= expected:
            return True
        time.sleep(0.25)
    return False


def _window(engine: sa.Engine, tag: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT count(*) AS n, extract(epoch FROM max(created_at) - min(created_at)) AS span, "
                "extract(epoch FROM min(created_at) - min(received_at)) AS first_lag "
                "FROM messages WHERE wamid LIKE :p"
            ),
            {"p": f"wamid.{tag}.%"},
        ).one()
        lat = [
            float(r[0]) * 1000
            for r in conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM created_at - received_at) FROM messages WHERE wamid LIKE :p"
                ),
                {"p": f"wamid.{tag}.%"},
            )
        ]
    return {
        "messages": int(row.n),
        "commit_span_s": round(float(row.span or 0), 3),
        "messages_per_s": round(int(row.n) / float(row.span), 1) if row.span else None,
        "latency_ms": {
            "p50": round(percentile(lat, 0.5), 1),
            "p95": round(percentile(lat, 0.95), 1),
            "p99": round(percentile(lat, 0.99), 1),
            "max": round(max(lat), 1) if lat else None,
        },
    }


def _baseline(
    processes: int,
    threads: int,
    count: int,
    *,
    module: str,
    queue: str,
    actor: str,
    args: Callable[[int], tuple[Any, ...]],
) -> dict[str, Any]:
    """Drain `count` pre-queued messages of `actor` on a default Dramatiq broker, as the reference
    machine's figures were measured."""
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from devkit.processes import Process, queue_depth, start_worker, wait_for

    broker = RabbitmqBroker(url=os.environ["RABBITMQ_URL"], confirm_delivery=True)
    broker.declare_queue(queue)
    for i in range(count):
        broker.enqueue(
            dramatiq.Message(queue_name=queue, actor_name=actor, args=args(i), kwargs={}, options={})
        )
    broker.close()
    start = time.monotonic()
    worker: Process = start_worker(
        [queue], processes=processes, threads=threads, module=module, env={"LOG_LEVEL": "WARNING"}
    )
    ready = time.monotonic()
    wait_for(lambda: queue_depth(os.environ["RABBITMQ_URL"], queue) == 0, 300, 0.05)
    drained = time.monotonic()
    worker.stop()
    return {
        "messages": count,
        "drain_s": round(drained - ready, 3),
        "messages_per_s": round(count / (drained - ready), 1),
        "worker_start_s": round(ready - start, 3),
    }


def _noop_baseline(processes: int, threads: int, count: int) -> dict[str, Any]:
    body = "x" * 700
    return _baseline(
        processes,
        threads,
        count,
        module="bench.noop_worker",
        queue="bench_noop",
        actor="noop",
        args=lambda i: (body, time.time(), "b"),
    )


def _insert_baseline(engine: sa.Engine, processes: int, threads: int, count: int) -> dict[str, Any]:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE bench_insert (key text PRIMARY KEY, body text NOT NULL, received_at float8)"
            )
        )
    body = "x" * 700
    return _baseline(
        processes,
        threads,
        count,
        module="bench.insert_worker",
        queue="bench_insert",
        actor="insert",
        args=lambda i: (f"k{i}", body, time.time()),
    )


def _targets(sustained: float, backlog: float, noop: float, insert: float) -> dict[str, Any]:
    """The 2,000 messages/s target, raw and scaled by each same-run baseline: the no-op drain
    measures the broker and Dramatiq on this machine; the one-insert drain adds a Postgres commit
    per message, the nearer kin of this worker."""
    return {
        f"{run}_by_{name}": scaled_target(2000, figure, baseline, reference)
        for run, figure in (("sustained", sustained), ("backlog_drain", backlog))
        for name, baseline, reference in (
            ("noop_drain", noop, NOOP_DRAIN_PER_S),
            ("insert_drain", insert, INSERT_DRAIN_PER_S),
        )
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=12_000)
    parser.add_argument(
        "--rate", type=float, default=1500.0, help="offered deliveries/s in the sustained run"
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--steady-rate", type=float, default=500.0, help="messages/s")
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    parser.add_argument("--baseline-messages", type=int, default=20_000)
    parser.add_argument("--history", type=int, default=20_000, help="messages already stored per tenant")
    args = parser.parse_args()

    from config import get_settings
    from db import admin
    from db.engine import create_db_engine
    from devkit.processes import start_ingress, start_worker
    from devkit.services import rabbitmq_vhost

    db_url = bench_database_url()
    with rabbitmq_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")) as amqp:
        os.environ.update(
            {
                "DATABASE_URL": db_url,
                "RABBITMQ_URL": amqp,
                "WHATSAPP_APP_SECRET": SECRET,
                "LOG_LEVEL": "WARNING",
            }
        )
        get_settings.cache_clear()
        settings = get_settings()
        admin.upgrade(settings)
        engine = create_db_engine(settings, pool_size=2, as_app_role=False)
        ingress = worker = None
        try:
            tenants = create_tenants(create_db_engine(settings, pool_size=1), args.tenants)
            numbers = [pnid for _, pnid in tenants]
            seed_history(engine, args.history)
            report: dict[str, Any] = {
                "command": " ".join([os.path.basename(sys.executable), "-m", "bench.inbound", *sys.argv[1:]]),
                "cores": os.cpu_count(),
                "worker": {"processes": args.processes, "threads": args.threads},
                "history_messages_per_tenant": args.history,
            }
            drains = (args.processes, args.threads, args.baseline_messages)
            report["baseline_noop_drain"] = _noop_baseline(*drains)
            report["baseline_insert_drain"] = _insert_baseline(engine, *drains)

            ingress, url = start_ingress({"LOG_LEVEL": "WARNING"})
            host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80
            worker = start_worker(
                ["inbound", "media"],
                processes=args.processes,
                threads=args.threads,
                env={"LOG_LEVEL": "WARNING"},
            )

            # Warm-up: routes cached, statements prepared, pools filled.
            warm, warm_n = _deliveries(numbers, 400, "warm")
            asyncio.run(run_paced(host, port, [_request(host, port, b) for b in warm], 400, 1.0))
            _wait_count(engine, "warm", warm_n, 60)

            bodies, total = _deliveries(numbers, args.deliveries, "sus")
            requests = [_request(host, port, b) for b in bodies]
            started = time.monotonic()
            posted = asyncio.run(
                run_paced(host, port, requests, args.rate, len(requests) / args.rate, connections=64)
            )
            post_s = time.monotonic() - started
            done = _wait_count(engine, "sus", total, 300)
            sustained = _window(engine, "sus")
            sustained.update(
                {
                    "deliveries": args.deliveries,
                    "offered_deliveries_per_s": args.rate,
                    "ingress_accepted": posted.statuses,
                    "ingress_post_s": round(post_s, 2),
                    "end_to_end_s": round(time.monotonic() - started, 2),
                    "complete": done,
                }
            )
            report["sustained"] = sustained

            avg = total / args.deliveries
            count = int(args.steady_rate / avg * args.steady_seconds)
            steady_bodies, steady_total = _deliveries(numbers, count, "steady")
            steady_requests = [_request(host, port, b) for b in steady_bodies]
            asyncio.run(
                run_paced(
                    host, port, steady_requests, args.steady_rate / avg, args.steady_seconds, connections=32
                )
            )
            _wait_count(engine, "steady", steady_total, 120)
            steady = _window(engine, "steady")
            steady["offered_messages_per_s"] = args.steady_rate
            report["steady_500"] = steady

            # The workers' own capacity: a backlog queued while they were stopped, then drained with
            # the ingress idle (the sustained run above shares the two cores with it).
            worker.stop()
            worker = None
            drain_bodies, drain_total = _deliveries(numbers, args.deliveries, "drain")
            asyncio.run(
                run_paced(
                    host,
                    port,
                    [_request(host, port, b) for b in drain_bodies],
                    args.rate,
                    len(drain_bodies) / args.rate,
                    connections=64,
                )
            )
            worker = start_worker(
                ["inbound", "media"],
                processes=args.processes,
                threads=args.threads,
                env={"LOG_LEVEL": "WARNING"},
            )
            drained = _wait_count(engine, "drain", drain_total, 300)
            backlog = _window(engine, "drain")
            backlog["complete"] = drained
            backlog.pop("latency_ms", None)  # queueing time by construction; not a latency
            report["backlog_drain"] = backlog
            report["throughput_target"] = _targets(
                sustained["messages_per_s"] or 0,
                backlog["messages_per_s"] or 0,
                report["baseline_noop_drain"]["messages_per_s"],
                report["baseline_insert_drain"]["messages_per_s"],
            )
            print(json.dumps(report, indent=2))
        finally:
            if worker is not None:
                worker.stop()
            if ingress is not None:
                ingress.stop()
            engine.dispose()
            admin.drop_database(settings)


if __name__ == "__main__":
    main()
