"""CPU per outbound send, without the broker: the workers' send engine runs the send handler on N
queued messages, one at a time (nothing to batch with), against a database of its own, the
machine's Redis and the fake Graph API (no latency), and reports per send the CPU of this
process, of Postgres (every server process, WAL writer included), of Redis and of the fake. No
other load: the figure to compare two versions by, run in alternation (CPU time on a shared
machine still varies by a third from hour to hour).

    .venv/bin/python -m bench.outbound_cpu [--messages 3000] [--numbers 20]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from typing import Any

import redis
import sqlalchemy as sa

from bench.fake_graph import start_fake_graph
from bench.history import bench_database_url
from bench.outbound import insert_queued, setup_tenants
from bench.procstat import cpu_seconds as _process_cpu_seconds
from bench.procstat import postgres_cpu as _postgres_cpu
from bench.procstat import redis_cpu as _redis_cpu


def _queue(engine: sa.Engine, routes: list[tuple[uuid.UUID, str]], tag: str, count: int) -> list[Any]:
    from workers.outbound.handler import SendCommand

    commands = [SendCommand(*q) for q in insert_queued(engine, routes, range(count), tag)]
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE messages")
    return commands


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--numbers", type=int, default=20)
    parser.add_argument("--history", type=int, default=2_000, help="messages already stored per tenant")
    args = parser.parse_args()

    from config import get_settings
    from db import admin
    from db.engine import create_db_engine
    from devkit.jobs import RecordingPublisher
    from services.number_routes import RouteCache
    from workers.graph import GraphClient
    from workers.graph.async_client import AsyncGraphSender
    from workers.inbound.statuses import apply_pending_statuses
    from workers.outbound.adapters import FleetBreakers, FleetPacer
    from workers.outbound.engine import SendEngine
    from workers.outbound.handler import SendOutcome, SendPorts
    from workers.outbound.options import GraphAdapters, OutboundOptions
    from workers.outbound.store import PostgresSendStore

    fake, fake_url = start_fake_graph()
    os.environ["DATABASE_URL"] = bench_database_url()
    os.environ["GRAPH_API_URL"] = fake_url
    get_settings.cache_clear()
    settings = get_settings()
    try:
        setup_engine, routes = setup_tenants(args.numbers, 100_000, args.history)
        setup_engine.dispose()
        # As the workers run it: pooled connections, no ping on checkout.
        engine = create_db_engine(settings, pool_size=1, pre_ping=False)
        client = redis.Redis.from_url(settings.redis_url)
        options = OutboundOptions(redis_namespace=f"adsapp-bench:{uuid.uuid4().hex[:8]}")
        graph = GraphAdapters(GraphClient.from_settings(settings), client, options)

        async def ports() -> SendPorts:
            sender = AsyncGraphSender(settings.graph_api_url, settings.graph_api_version)
            await sender.start()
            store = PostgresSendStore(engine, RecordingPublisher(), apply_pending_statuses)
            return SendPorts(
                graph=sender,
                breakers=FleetBreakers(graph.breakers),
                pacer=FleetPacer(graph.pacer),
                routes=RouteCache(engine),
                store=store,
            )

        async def close(made: SendPorts) -> None:
            if isinstance(made.graph, AsyncGraphSender):
                await made.graph.close()

        # The workers' engine, one send at a time: what a send costs without company to batch with.
        sends = SendEngine(ports, close)
        for command in _queue(engine, routes, "warm", args.warmup):
            sends.send(command)
        measured = _queue(engine, routes, "run", args.messages)
        assert fake.proc is not None
        fake_pid = fake.proc.pid
        cpu, wall = time.process_time(), time.perf_counter()
        pg, rd, fk = _postgres_cpu(), _redis_cpu(client), _process_cpu_seconds(fake_pid)
        outcomes = [sends.send(command) for command in measured]
        pg_after = _postgres_cpu()
        n = args.messages

        def per_send(seconds: float) -> int:
            return round(seconds / n * 1e6)

        options_used = " ".join(f"--{k} {v}" for k, v in vars(args).items())
        report = {
            "command": f"python -m bench.outbound_cpu {options_used}",
            "sends": n,
            "sent": sum(1 for o in outcomes if o is SendOutcome.SENT),
            "python_cpu_us_per_send": per_send(time.process_time() - cpu),
            "postgres_cpu_us_per_send": per_send(sum(v - pg.get(p, 0.0) for p, v in pg_after.items())),
            "redis_cpu_us_per_send": per_send(_redis_cpu(client) - rd),
            "fake_graph_cpu_us_per_send": per_send(_process_cpu_seconds(fake_pid) - fk),
            "wall_us_per_send": per_send(time.perf_counter() - wall),
        }
        sends.close()
        graph.close()
        client.close()
        engine.dispose()
        print(json.dumps(report, indent=2))
    finally:
        fake.stop()
        admin.drop_database(settings)


if __name__ == "__main__":
    main()
