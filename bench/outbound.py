"""Outbound benchmark: queued messages through `dramatiq workers.app --queues outbound` to the fake
Graph API (its own process, `--latency-ms` ± `--jitter-ms`, uniform), in a database and vhost of
its own, with the default Procfile's outbound group (2 processes of 256 threads).

    .venv/bin/python -m bench.outbound [--messages 20000] [--numbers 20] [--mps 1000] [--rate 1500]
                                       [--latency-ms 250 --jitter-ms 50] [--backlog]

By default the workers send while this process is still queueing (sustained: the producer's CPU
competes with them); `--backlog` queues everything first, then starts the workers, to measure
them alone.

Messages are queued the way the send API queues them (a `queued` row and a `send_message` job),
but written in batches of 100 straight to Postgres and published from this process at `--rate`
per second: the API's own per-request cost is not what is measured here. Prints JSON with:
- sends_per_s: messages sent / (last sent_at - first sent_at);
- latency_ms: queued (row created, job published right after) to sent (wamid recorded), p50/p99;
- per_number_per_s: each number's sends / its own send span (min, max over the numbers); a cold
  number may first take a burst of a second's sends (`PACING_BURST_SECONDS`), so over a short run
  this reads above the rate; per_number_steady_per_s counts from 2 s after each number's first send;
- ceiling_per_s: an aiohttp client posting to the same fake at the same latency with
  `--ceiling-in-flight` requests in flight (not the fleet's thread count), no queue, no database,
  no pacing: the most this machine sends; ratio = sends_per_s / min(ceiling, numbers * mps);
- cpu_us_per_send of the worker processes, Postgres and RabbitMQ (the machine's servers: other
  clients count too), Redis and the fake, over the fleet's run, and their total; cpu_bound_per_s,
  the cores' CPU over that total: the most this machine serves at this CPU per send; the fake's
  own per request over the ceiling's; `--ceiling-client httpx` measures httpx's async client
  instead of aiohttp (its pool is its own bottleneck: a comparison, not the machine's ceiling);
- worker_rss_mb: per worker process, the peak (high-water mark) and the first and last samples;
- duplicates (the fake's log, by biz_opaque_callback_data) and lost (rows not `sent`), both 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import redis
import sqlalchemy as sa

from bench import procstat
from bench.fake_graph import start_fake_graph
from bench.graph_ceiling import graph_ceiling
from bench.history import bench_database_url, create_tenants, seed_history
from bench.paced_load import percentile

BATCH = 100
STEADY_AFTER_S = 2.0
# This run's messages, not the seeded history.
_MINE = "text LIKE 'bench %'"


def setup_tenants(numbers: int, mps: int, history: int) -> tuple[Any, list[tuple[uuid.UUID, str]]]:
    """This run's database migrated, `numbers` tenants on the enterprise plan (one number each, at
    `mps`), a history seeded; returns an app-role engine and (organization, number) per tenant."""
    from config import get_settings
    from db import admin
    from db.engine import create_db_engine
    from db.tables import organizations
    from db.uow import UnitOfWork

    settings = get_settings()
    admin.upgrade(settings)
    engine = create_db_engine(settings, pool_size=2)
    routes = create_tenants(engine, numbers, mps=mps)
    with UnitOfWork(engine, system=True) as uow:
        uow.conn.execute(
            sa.update(organizations)
            .where(organizations.c.id.in_([org for org, _ in routes]))
            .values(plan="enterprise")
        )
        uow.commit()
    owner = create_db_engine(settings, pool_size=1, as_app_role=False)
    seed_history(owner, history)
    owner.dispose()
    return engine, routes


def insert_queued(
    engine: Any, routes: list[tuple[uuid.UUID, str]], indices: range, tag: str
) -> list[tuple[uuid.UUID, uuid.UUID, str, str]]:
    """`queued` text messages, one per index (recipient number `i`, tenants in turn), stored as the
    send API stores them, in one statement; returns (organization, message id, number, recipient)
    for each, what a send job names."""
    from db.tables import messages
    from db.uow import UnitOfWork

    rows, queued = [], []
    for i in indices:
        org, pnid = routes[i % len(routes)]
        message_id, to = uuid.uuid4(), f"1{i:011d}"
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"body": f"{tag} {i}", "preview_url": False},
            "biz_opaque_callback_data": str(message_id),
        }
        rows.append(
            {"id": message_id, "organization_id": org, "phone_number_id": pnid, "direction": "outbound",
             "type": "text", "text": f"{tag} {i}", "status": "queued", "raw": payload}
        )  # fmt: skip
        queued.append((org, message_id, pnid, to))
    with UnitOfWork(engine, system=True) as uow:
        uow.conn.execute(sa.insert(messages), rows)
        uow.commit()
    return queued


def _produce(
    engine: Any, routes: list[tuple[uuid.UUID, str]], total: int, rate: float, publishers: int
) -> float:
    """Insert `queued` rows in batches and publish their jobs, paced at `rate` per second.

    Each job is published with a confirm, as the send API does; a confirm waits for RabbitMQ's
    disk, so `publishers` threads publish side by side (the broker keeps a channel per thread) or
    this producer, not the workers, would set the pace.
    """
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from domain.outbound import send_job
    from services.publisher import BrokerJobPublisher

    publisher = BrokerJobPublisher(
        RabbitmqBroker(url=os.environ["RABBITMQ_URL"], confirm_delivery=True, middleware=[])
    )
    started = time.monotonic()
    with ThreadPoolExecutor(publishers) as pool:
        for start in range(0, total, BATCH):
            due = started + start / rate
            time.sleep(max(0.0, due - time.monotonic()))
            queued = insert_queued(engine, routes, range(start, min(total, start + BATCH)), "bench")
            list(pool.map(publisher.publish, [send_job(*q) for q in queued]))
    produced = time.monotonic() - started
    publisher.close()
    return produced


def _wait_sent(engine: Any, total: int, timeout: float) -> int:
    """Polls the partial index of pending sends (every one of this run's messages is pending until
    settled, the history never is), so polling costs the workers next to nothing."""
    deadline = time.monotonic() + timeout
    pending = total
    from db.uow import UnitOfWork

    while time.monotonic() < deadline:
        with UnitOfWork(engine, system=True) as uow:
            conn = uow.conn
            pending = int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM messages "
                        "WHERE direction = 'outbound' AND status IN ('queued', 'sending')"
                    )
                ).scalar_one()
            )
        if pending == 0:
            break
        time.sleep(0.5)
    return total - pending


def _results(engine: Any) -> dict[str, Any]:
    from db.uow import UnitOfWork

    with UnitOfWork(engine, system=True) as uow:
        conn = uow.conn
        rows = conn.execute(
            sa.text(f"SELECT status, count(*) FROM messages WHERE {_MINE} GROUP BY status")
        ).all()
        statuses = {str(r[0]): int(r[1]) for r in rows}
        span = conn.execute(
            sa.text(
                "SELECT extract(epoch FROM max(sent_at) - min(sent_at)) FROM messages "
                f"WHERE {_MINE} AND status = 'sent'"
            )
        ).scalar_one()
        latency = [
            float(r[0]) * 1000
            for r in conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM sent_at - created_at) FROM messages "
                    f"WHERE {_MINE} AND status = 'sent'"
                )
            )
        ]
        # Each number's rate over its whole span, and from 2 s after its first send: a cold number
        # may take a burst at once (`mps × PACING_BURST_SECONDS`), a share of a short run's span.
        per_number = conn.execute(
            sa.text(
                "WITH s AS (SELECT phone_number_id, sent_at, sent_at >= min(sent_at) "
                "OVER (PARTITION BY phone_number_id) + make_interval(secs => :skip) AS steady "
                f"FROM messages WHERE {_MINE} AND status = 'sent') "
                "SELECT count(*), extract(epoch FROM max(sent_at) - min(sent_at)), "
                "count(*) FILTER (WHERE steady), "
                "extract(epoch FROM max(sent_at) - min(sent_at) FILTER (WHERE steady)) "
                "FROM s GROUP BY phone_number_id"
            ),
            {"skip": STEADY_AFTER_S},
        ).all()
        timeline = [
            int(r[1])
            for r in conn.execute(
                sa.text(
                    "SELECT date_trunc('second', sent_at) AS s, count(*) FROM messages "
                    f"WHERE {_MINE} AND status = 'sent' GROUP BY s ORDER BY s"
                )
            )
        ]
    sent = int(statuses.get("sent", 0))
    return {
        "per_number_per_s": _spread([(r[0], r[1]) for r in per_number]),
        "per_number_steady_per_s": _spread([(r[2], r[3]) for r in per_number]),
        "statuses": statuses,
        "sent_per_second": timeline,
        "sent": sent,
        "send_span_s": round(float(span or 0), 3),
        "sends_per_s": round(sent / float(span), 1) if span else None,
        "latency_ms": {
            "p50": round(percentile(latency, 0.5), 1),
            "p99": round(percentile(latency, 0.99), 1),
            "max": round(max(latency), 1) if latency else None,
        },
    }


def _spread(counts_and_spans: list[tuple[Any, Any]]) -> dict[str, float] | None:
    """The lowest and highest of the numbers' rates (sends over seconds)."""
    rates = [int(n) / float(span) for n, span in counts_and_spans if span]
    return {"min": round(min(rates), 1), "max": round(max(rates), 1)} if rates else None


class _Cpu:
    """CPU seconds of the worker processes, Postgres, Redis, the fake and RabbitMQ since `start`."""

    def __init__(self, worker_pid: int | None, fake_pid: int, client: redis.Redis) -> None:
        self._worker, self._fake, self._redis = worker_pid, fake_pid, client
        self._start = self._read()

    def _read(self) -> dict[str, Any]:
        workers = {}
        if self._worker is not None:
            workers = {p: procstat.cpu_seconds(p) for p in [self._worker, *procstat.children(self._worker)]}
        return {
            "workers": workers,
            "postgres": procstat.postgres_cpu(),
            "redis": procstat.redis_cpu(self._redis),
            "fake": procstat.cpu_seconds(self._fake),
            "rabbitmq": {p: procstat.cpu_seconds(p) for p in procstat.named("beam.smp")},
        }

    def per(self, count: int) -> dict[str, int]:
        now, then = self._read(), self._start

        def grown(key: str) -> float:
            return sum(v - then[key].get(p, 0.0) for p, v in now[key].items())

        def us(seconds: float) -> int:
            return round(seconds / max(1, count) * 1e6)

        spent = {
            "workers": us(grown("workers")),
            "postgres": us(grown("postgres")),
            "redis": us(now["redis"] - then["redis"]),
            "fake": us(now["fake"] - then["fake"]),
            "rabbitmq": us(grown("rabbitmq")),
        }
        return {**spent, "total": sum(spent.values())}


def _outcomes(worker: Any) -> dict[str, dict[str, float]]:
    """The workers' own send and deferral counters (their Prometheus multiprocess files)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=worker.env["PROMETHEUS_MULTIPROC_DIR"])
    wanted = {"adsapp_outbound_sends_total": "outcome", "adsapp_outbound_deferrals_total": "reason"}
    found: dict[str, dict[str, float]] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            label = wanted.get(sample.name)
            if label is not None:
                found.setdefault(sample.name, {})[sample.labels[label]] = sample.value
    return found


def _watch(worker: Any, fake_pid: int, client: redis.Redis) -> tuple[_Cpu, procstat.RssSampler]:
    assert worker.proc is not None
    return _Cpu(worker.proc.pid, fake_pid, client), procstat.RssSampler(worker.proc.pid).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--numbers", type=int, default=20)
    parser.add_argument("--mps", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1500.0, help="messages queued per second")
    parser.add_argument("--publishers", type=int, default=8, help="threads publishing with confirms")
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--jitter-ms", type=float, default=None, help="uniform ±; default latency / 5")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=256, help="per process: the sends it has in flight")
    parser.add_argument("--ceiling-requests", type=int, default=10_000)
    parser.add_argument("--ceiling-in-flight", type=int, default=512)
    parser.add_argument(
        "--ceiling-client",
        choices=["aiohttp", "httpx"],
        default="aiohttp",
        help="httpx's async pool limits itself; aiohttp's ceiling is the machine's",
    )
    parser.add_argument("--history", type=int, default=2_000, help="messages already stored per tenant")
    parser.add_argument(
        "--backlog", action="store_true", help="queue every message before starting the workers"
    )
    args = parser.parse_args()

    from config import get_settings
    from db import admin
    from devkit.processes import Process, start_worker
    from devkit.services import rabbitmq_vhost

    db_url = bench_database_url()
    with rabbitmq_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")) as amqp:
        fake, fake_url = start_fake_graph()
        os.environ.update(
            {"DATABASE_URL": db_url, "RABBITMQ_URL": amqp, "LOG_LEVEL": "WARNING", "GRAPH_API_URL": fake_url,
             "OUTBOUND_REDIS_NAMESPACE": f"adsapp-bench:{uuid.uuid4().hex[:8]}",
             "DATABASE_POOL_SIZE": "8", "OUTBOUND_IN_FLIGHT": str(args.threads),
             "OUTBOUND_IN_FLIGHT_PER_NUMBER": str(args.threads)}
        )  # fmt: skip
        jitter = args.latency_ms / 5 if args.jitter_ms is None else args.jitter_ms
        client = redis.Redis.from_url(get_settings().redis_url)
        assert fake.proc is not None
        fake_pid = fake.proc.pid
        get_settings.cache_clear()
        worker: Process | None = None
        try:
            latency = {"latency_ms": args.latency_ms, "latency_jitter_ms": jitter}
            httpx.post(f"{fake_url}/_fake/config", json=latency).raise_for_status()
            engine, routes = setup_tenants(args.numbers, args.mps, args.history)
            workers = {"processes": args.processes, "threads": args.threads, "timeout": 60}
            if args.backlog:  # the workers alone, without the producer beside them
                produce_s = _produce(engine, routes, args.messages, args.rate, args.publishers)
                worker = start_worker(["outbound"], **workers)
                assert worker.proc is not None
                cpu, rss = (
                    _Cpu(worker.proc.pid, fake_pid, client),
                    procstat.RssSampler(worker.proc.pid).start(),
                )
            else:
                worker = start_worker(["outbound"], **workers)
                assert worker.proc is not None
                cpu, rss = (
                    _Cpu(worker.proc.pid, fake_pid, client),
                    procstat.RssSampler(worker.proc.pid).start(),
                )
                produce_s = _produce(engine, routes, args.messages, args.rate, args.publishers)
            done = _wait_sent(engine, args.messages, 600)
            cpu_per_send = cpu.per(done)
            outcomes = _outcomes(worker)
            worker_rss = rss.stop()
            report: dict[str, Any] = {
                "command": " ".join(
                    [os.path.basename(sys.executable), "-m", "bench.outbound", *sys.argv[1:]]
                ),
                "cores": os.cpu_count(),
                "queued_via": "batched row inserts + confirmed publishes, not the HTTP API",
                "mode": "backlog: all queued before the workers start" if args.backlog else "sustained",
                "messages": args.messages,
                "numbers": args.numbers,
                "mps_per_number": args.mps,
                "fake_latency_ms": {"mean": args.latency_ms, "jitter_uniform_plus_minus": jitter},
                "offered_per_s": args.rate,
                "produce_s": round(produce_s, 2),
                "produced_per_s": round(args.messages / produce_s, 1),
                "worker": {"processes": args.processes, "threads": args.threads},
                "history_messages_per_tenant": args.history,
                "settled": done,
            }
            report.update(_results(engine))
            log = httpx.get(f"{fake_url}/_fake/log", params={"summary": "1"}, timeout=30).json()
            worker.stop()
            worker = None
            report["fake_accepted"] = log["total"]
            report["duplicates"] = len(log["duplicates"])
            report["lost"] = args.messages - report["sent"]
            report["worker_counters"] = outcomes
            report["cpu_us_per_send"] = cpu_per_send
            # What this run's CPU per send, every process's, allows on this machine's cores.
            report["cpu_bound_per_s"] = round((os.cpu_count() or 1) * 1e6 / max(1, cpu_per_send["total"]), 1)
            report["worker_rss_mb"] = worker_rss
            fake_before = procstat.cpu_seconds(fake_pid)
            measured = graph_ceiling(
                fake_url,
                args.ceiling_requests,
                args.ceiling_in_flight,
                numbers=args.numbers,
                library=args.ceiling_client,
            )
            ceiling = measured.per_s
            fake_us = (procstat.cpu_seconds(fake_pid) - fake_before) / args.ceiling_requests * 1e6
            offered = min(ceiling, args.numbers * args.mps)
            report["ceiling"] = {
                "client": measured.client,
                "per_s": round(ceiling, 1),
                "fake_cpu_us_per_request": round(fake_us),
                "target_per_s": args.numbers * args.mps,
            }
            report["ratio_to_min_of_ceiling_and_target"] = (
                round(report["sends_per_s"] / offered, 2) if report.get("sends_per_s") else None
            )
            print(json.dumps(report, indent=2))
        finally:
            if worker is not None:
                worker.stop()
            fake.stop()
            client.close()
            get_settings.cache_clear()
            admin.drop_database(get_settings())


if __name__ == "__main__":
    main()
