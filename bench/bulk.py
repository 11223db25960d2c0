"""Bulk benchmark: planning a broadcast, and broadcasts run by the bulk and outbound worker
groups (real processes) against the fake Graph API (its own process, at `--latency-ms`), in a
database and vhost of their own.

    .venv/bin/python -m bench.bulk [--plan-recipients 100000] [--recipients 20000]
                                   [--latency-ms 250] [--outbound-processes 2 --outbound-threads 256]
                                   [--plan-only] [--skip-1000 | --skip-200]

Prints JSON with:
- planning: seconds to plan `--plan-recipients` recipients (one transaction: the checks, the job,
  its items by COPY, chunks; per-recipient variables frozen into each item), target ≤ 5 s:
  `plan_s` for a list of wa_ids none of which is a contact yet, `plan_filter_s` for a filter
  (a tag) over as many of the tenant's contacts (each item then references its contact); with
  each, the CPU seconds it took in this process and in Postgres (`plan_cpu_s`,
  `plan_filter_cpu_s`), which follow the machine's load far less than the wall time.
  Beside them, the same run's floors for the same rows (built and encoded as planning does):
  `copy_floor_s`, COPY into a bare temporary table; `insert_floor_s`, that COPY and the one
  INSERT ... SELECT planning makes, into a bare table of the items' columns (no index, key,
  check, trigger or policy);
- paced_200: a broadcast of `--recipients` on a 200-mps number: achieved sends/s over the span of
  sent_at (target: within 5 % of 200);
- paced_1000: the same on a 1,000-mps number, beside `ceiling_per_s` (`bench.graph_ceiling`:
  aiohttp posting the same count to the same fake at the same latency, with max(512,
  rate x latency x 2) requests in flight), and the ratio to min(ceiling, 1,000) (target ≥ 900/s,
  or ≥ 0.8 of that ceiling where it is lower);
- peak RSS (VmHWM) of every bulk and outbound worker process (target ≤ 150 MB each);
- duplicates (the fake's log) and lost (items not succeeded), both 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench import procstat
from bench.fake_graph import start_fake_graph
from bench.graph_ceiling import graph_ceiling, in_flight_for
from bench.history import bench_database_url, create_tenants

TEMPLATE = {
    "name": "bench_offer",
    "language": "en_US",
    "status": "APPROVED",
    "category": "MARKETING",
    "components": [{"type": "BODY", "text": "Hi {{1}}, our offer."}],
}
COMPONENTS = [{"type": "body", "parameters": [{"type": "text", "text": "{{contact.wa_id}}"}]}]


def _tenant(engine: Any, n: int, mps: int) -> tuple[uuid.UUID, str]:
    from db.repos.templates import upsert
    from db.tables import organizations
    from db.uow import UnitOfWork

    ((org, number),) = create_tenants(engine, 1, mps=mps, phone_number_id=f"bench-bulk-{n}-{mps}")
    with UnitOfWork(engine, system=True) as uow:
        uow.conn.execute(sa.update(organizations).where(organizations.c.id == org).values(plan="enterprise"))
        upsert(uow.conn, org, f"bench-waba-{n}", [TEMPLATE])
        uow.commit()
    return org, number


def _plan(
    engine: Any, publisher: Any, org: uuid.UUID, count: int, offset: int, *, by_filter: bool = False
) -> tuple[uuid.UUID, float]:
    from services import bulk

    if by_filter:
        plan = bulk.BroadcastPlan(
            "bench_offer", "en_US", COMPONENTS, filter=bulk.ContactFilter(tags=[PLAN_TAG])
        )
    else:
        recipients = [bulk.Recipient(wa_id=f"1{offset + i:011d}") for i in range(count)]
        plan = bulk.BroadcastPlan("bench_offer", "en_US", COMPONENTS, recipients=recipients)
    started = time.perf_counter()
    job = bulk.plan_broadcast(bulk.BulkPorts(engine, publisher), org, plan, None)
    return job.id, time.perf_counter() - started


PLAN_TAG = "bench-plan"


def _backends_cpu(owner: Any) -> dict[int, float]:
    """CPU seconds so far of every other backend of this run's own database."""
    with owner.connect() as conn:
        pids = conn.execute(
            sa.text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalars()
        return {int(pid): procstat.cpu_seconds(int(pid)) for pid in pids}


def _timed_plan(
    owner: Any, engine: Any, org: uuid.UUID, count: int, *, by_filter: bool
) -> tuple[float, dict[str, float]]:
    """Wall seconds of one planning, and the CPU seconds it took in this process and in Postgres:
    on a shared machine the wall time follows the load, the CPU far less."""
    from devkit.jobs import RecordingPublisher

    before, python = _backends_cpu(owner), time.process_time()
    _, wall = _plan(engine, RecordingPublisher(), org, count, 0, by_filter=by_filter)
    python = time.process_time() - python
    after = _backends_cpu(owner)
    postgres = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
    return round(wall, 2), {"python": round(python, 2), "postgres": round(postgres, 2)}


def _seed_contacts(owner: Any, org: uuid.UUID, count: int) -> None:
    """`count` contacts of `org` tagged `PLAN_TAG` (wa_ids apart from every broadcast's), analysed."""
    with owner.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO contacts (organization_id, wa_id, phone, profile_name, tags) "
                "SELECT :org, '9' || lpad(g::text, 11, '0'), g::text, 'Contact ' || g, ARRAY[:tag] "
                "FROM generate_series(1, :count) g"
            ),
            {"org": org, "count": count, "tag": PLAN_TAG},
        )
        conn.execute(sa.text("ANALYZE contacts"))


def _floors(owner: Any, count: int) -> tuple[float, float]:
    """The same rows as planning writes (`db.repos.bulk.item_copy_lines`): seconds to COPY them
    into planning's bare temporary table, and to COPY and move them with planning's one
    INSERT ... SELECT into a bare table of the items' columns (no index, key, check, trigger or
    policy). Nothing is kept."""
    from db.repos import bulk as repo

    params = {"components": COMPONENTS}
    items = [repo.NewItem(i, i // 500, f"1{i:011d}", None, params) for i in range(count)]
    move = repo.MOVE_ITEMS.text.replace("INSERT INTO bulk_job_items", "INSERT INTO bench_items_floor")
    with owner.connect() as conn, conn.begin() as transaction:
        conn.execute(sa.text("CREATE TABLE bench_items_floor (LIKE bulk_job_items INCLUDING DEFAULTS)"))
        conn.execute(repo.STAGE_ITEMS)
        started = time.perf_counter()
        repo.copy_rows(conn, repo.COPY_ITEMS, repo.item_copy_lines(items))
        copied = time.perf_counter()
        conn.execute(sa.text(move), {"org": uuid.uuid4(), "job": uuid.uuid4()})
        moved = time.perf_counter()
        transaction.rollback()
    return copied - started, moved - started


def _wait_job(engine: Any, org: uuid.UUID, job_id: uuid.UUID, timeout: float) -> Any:
    from domain.bulk import FINISHED
    from services import bulk

    deadline = time.monotonic() + timeout
    while True:
        job = bulk.get_job(engine, org, job_id)
        if job.status in FINISHED or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def _achieved(engine: Any, org: uuid.UUID, job_id: uuid.UUID, chunk_timeline: bool) -> dict[str, Any]:
    from db.uow import UnitOfWork

    with UnitOfWork(engine, organization_id=org) as uow:
        row = uow.conn.execute(
            sa.text(
                "SELECT count(*) AS sent, extract(epoch FROM max(m.sent_at) - min(m.sent_at)) AS span "
                "FROM bulk_job_items i JOIN messages m ON m.id = i.message_id "
                "WHERE i.bulk_job_id = :j AND m.status = 'sent'"
            ),
            {"j": job_id},
        ).one()
        timeline = uow.conn.execute(
            sa.text(
                "SELECT count(*) FROM bulk_job_items i JOIN messages m ON m.id = i.message_id "
                "WHERE i.bulk_job_id = :j AND m.status = 'sent' "
                "GROUP BY date_trunc('second', m.sent_at) ORDER BY date_trunc('second', m.sent_at)"
            ),
            {"j": job_id},
        ).scalars()
        chunks = uow.conn.execute(
            sa.text(
                "WITH t0 AS (SELECT min(submitted_at) AS t FROM bulk_job_chunks WHERE bulk_job_id = :j) "
                "SELECT c.chunk, "
                "round(extract(epoch FROM c.submitted_at - t0.t)::numeric, 2) AS submitted, "
                "round(extract(epoch FROM min(m.sent_at) - t0.t)::numeric, 2) AS first_sent, "
                "round(extract(epoch FROM max(m.sent_at) - t0.t)::numeric, 2) AS last_sent, "
                "round(extract(epoch FROM c.settled_at - t0.t)::numeric, 2) AS settled "
                "FROM bulk_job_chunks c CROSS JOIN t0 "
                "JOIN bulk_job_items i ON i.bulk_job_id = c.bulk_job_id AND i.chunk = c.chunk "
                "JOIN messages m ON m.id = i.message_id "
                "WHERE c.bulk_job_id = :j GROUP BY c.chunk, c.submitted_at, c.settled_at, t0.t "
                "ORDER BY c.chunk"
            ),
            {"j": job_id},
        ).all()
    span = float(row.span or 0)
    return {
        # Per chunk, seconds from the first submission: submitted, first and last sent, settled.
        "chunks": [[float(v) for v in c[1:]] for c in chunks] if chunk_timeline else None,
        "sent": int(row.sent),
        "span_s": round(span, 2),
        "sends_per_s": round(row.sent / span, 1) if span else None,
        # Sends per wall-clock second: bursts and gaps say chunks came late, an even low rate CPU.
        "per_second": [int(n) for n in timeline],
    }


_Cpu = dict[str, dict[int, float]]


def _cpu(workers: list[Any], fake_pid: int) -> _Cpu:
    """CPU seconds so far of the outbound and bulk workers' processes, the fake, Postgres and
    RabbitMQ (both the machine's servers: other clients' work counts too)."""

    def tree(pid: int) -> dict[int, float]:
        return {p: procstat.cpu_seconds(p) for p in [pid, *procstat.children(pid)]}

    return {
        "outbound": tree(workers[0].proc.pid),
        "bulk": tree(workers[1].proc.pid),
        "fake": tree(fake_pid),
        "postgres": procstat.postgres_cpu(),
        "rabbitmq": {p: procstat.cpu_seconds(p) for p in procstat.named("beam.smp")},
    }


def _per_send(before: _Cpu, after: _Cpu, sends: int) -> dict[str, int]:
    return {
        name: round(sum(cpu - before[name].get(pid, 0.0) for pid, cpu in now.items()) / max(1, sends) * 1e6)
        for name, now in after.items()
    }


def _peak_rss_mb(leader_pid: int) -> list[float]:
    """VmHWM of every process in the leader's process group (Dramatiq's supervisor and workers)."""
    peaks = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != leader_pid:  # field 5, pgrp
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(round(int(line.split()[1]) / 1024, 1))
    return sorted(peaks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plan-recipients", type=int, default=100_000)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=250.0)
    parser.add_argument("--outbound-processes", type=int, default=2)
    parser.add_argument("--outbound-threads", type=int, default=256, help="per process, as the Procfile's")
    parser.add_argument("--bulk-threads", type=int, default=4)
    parser.add_argument("--skip-1000", action="store_true", help="only the 200-mps broadcast")
    parser.add_argument("--chunk-timeline", action="store_true", help="each chunk's timings too")
    parser.add_argument("--skip-200", action="store_true", help="only the 1,000-mps broadcast")
    parser.add_argument("--plan-only", action="store_true", help="only the planning figure")
    args = parser.parse_args()

    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from config import get_settings
    from db import admin
    from db.engine import create_db_engine
    from devkit.processes import Process, start_worker
    from devkit.services import rabbitmq_vhost
    from services.publisher import BrokerJobPublisher

    with rabbitmq_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")) as amqp:
        fake, fake_url = start_fake_graph()
        os.environ.update(
            {"DATABASE_URL": bench_database_url(), "RABBITMQ_URL": amqp, "LOG_LEVEL": "WARNING",
             "GRAPH_API_URL": fake_url, "OUTBOUND_REDIS_NAMESPACE": f"adsapp-bench:{uuid.uuid4().hex[:8]}",
             "DATABASE_POOL_SIZE": str(args.outbound_threads)}
        )  # fmt: skip
        get_settings.cache_clear()
        settings = get_settings()
        workers: list[Process] = []
        try:
            httpx.post(f"{fake_url}/_fake/config", json={"latency_ms": args.latency_ms}).raise_for_status()
            admin.upgrade(settings)
            engine = create_db_engine(settings, pool_size=2)
            owner = create_db_engine(settings, pool_size=1, as_app_role=False)
            report: dict[str, Any] = {
                "command": " ".join([os.path.basename(sys.executable), "-m", "bench.bulk", *sys.argv[1:]]),
                "cores": os.cpu_count(),
                "fake_latency_ms": args.latency_ms,
            }
            org, _ = _tenant(engine, 0, 1000)
            plan_s, plan_cpu = _timed_plan(owner, engine, org, args.plan_recipients, by_filter=False)
            _seed_contacts(owner, org, args.plan_recipients)
            filter_s, filter_cpu = _timed_plan(owner, engine, org, args.plan_recipients, by_filter=True)
            copy_floor, insert_floor = _floors(owner, args.plan_recipients)
            report["planning"] = {
                "recipients": args.plan_recipients,
                "plan_s": plan_s,
                "plan_cpu_s": plan_cpu,
                "plan_filter_s": filter_s,
                "plan_filter_cpu_s": filter_cpu,
                "copy_floor_s": round(copy_floor, 2),
                "insert_floor_s": round(insert_floor, 2),
                "target_s": 5.0,
            }
            if args.plan_only:
                print(json.dumps(report, indent=2))
                return
            out = {"processes": args.outbound_processes, "threads": args.outbound_threads, "timeout": 90}
            workers.append(start_worker(["outbound"], **out))
            workers.append(start_worker(["bulk"], processes=1, threads=args.bulk_threads, timeout=90))
            publisher = BrokerJobPublisher(RabbitmqBroker(url=amqp, confirm_delivery=True, middleware=[]))
            lost = 0
            for name, mps in (("paced_200", 200), ("paced_1000", 1000)):
                if (mps == 1000 and args.skip_1000) or (mps == 200 and args.skip_200):
                    continue
                org, _ = _tenant(engine, mps, mps)
                cpu_before = _cpu(workers, fake.proc.pid)  # type: ignore[union-attr]
                job_id, _ = _plan(engine, publisher, org, args.recipients, 10_000_000 * (mps // 100))
                job = _wait_job(engine, org, job_id, timeout=args.recipients / mps * 4 + 120)
                cpu_after = _cpu(workers, fake.proc.pid)  # type: ignore[union-attr]
                figures = {"mps": mps, "status": job.status, "succeeded": job.counts.succeeded,
                           **_achieved(engine, org, job_id, args.chunk_timeline),
                           "cpu_us_per_send": _per_send(cpu_before, cpu_after, args.recipients)}  # fmt: skip
                lost += args.recipients - job.counts.succeeded
                report[name] = figures
            publisher.close()
            report["peak_rss_mb"] = {"outbound": _peak_rss_mb(workers[0].proc.pid),  # type: ignore[union-attr]
                                     "bulk": _peak_rss_mb(workers[1].proc.pid), "target_mb": 150}  # type: ignore[union-attr]  # fmt: skip
            log = httpx.get(f"{fake_url}/_fake/log", params={"summary": "1"}, timeout=30).json()
            report["duplicates"] = len(log["duplicates"])
            report["lost"] = lost
            if "paced_1000" in report:
                # After the fake's log was read: the ceiling's own posts are not the fleet's.
                figures = report["paced_1000"]
                ceiling = graph_ceiling(fake_url, args.recipients, in_flight_for(1000, args.latency_ms))
                figures["ceiling_per_s"] = round(ceiling.per_s, 1)
                figures["ceiling_client"] = ceiling.client
                achieved = figures.get("sends_per_s")
                figures["ratio_to_min_of_ceiling_and_target"] = (
                    round(achieved / min(ceiling.per_s, 1000), 2) if achieved else None
                )
            print(json.dumps(report, indent=2))
        finally:
            for worker in workers:
                worker.stop()
            fake.stop()
            get_settings.cache_clear()
            admin.drop_database(get_settings())


if __name__ == "__main__":
    main()
