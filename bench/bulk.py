"""Bulk benchmark: planning a broadcast, and broadcasts run by the bulk and outbound worker
groups (real processes) against the fake Graph API (its own process, at `--latency-ms`), in a
database and vhost of their own.

    .venv/bin/python -m bench.bulk [--plan-recipients 100000] [--recipients 20000]
                                   [--latency-ms 250] [--outbound-processes 2 --outbound-threads 256]

Prints JSON with:
- planning: seconds to plan `--plan-recipients` recipients (one transaction: the checks, the job,
  its items by COPY, chunks), beside `copy_ceiling_s`, the same rows (built and encoded as planning
  does) COPYed into a bare temporary table (no index, constraint, policy or check); target ≤ 5 s;
- paced_200: a broadcast of `--recipients` on a 200-mps number: achieved sends/s over the span of
  sent_at (target: within 5 % of 200);
- paced_1000: the same on a 1,000-mps number, beside `aiohttp_ceiling_per_s`, aiohttp
  posting the same count to the same fake at the same latency with rate x latency x 2 requests in
  flight (target ≥ 900/s, or ≥ 0.8 of that ceiling where it is lower);
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

from bench.fake_graph import start_fake_graph
from bench.history import bench_database_url, create_tenants
from bench.outbound import _ceiling

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


def _plan(engine: Any, publisher: Any, org: uuid.UUID, count: int, offset: int) -> tuple[uuid.UUID, float]:
    from services import bulk

    recipients = [bulk.Recipient(wa_id=f"1{offset + i:011d}") for i in range(count)]
    plan = bulk.BroadcastPlan("bench_offer", "en_US", COMPONENTS, recipients=recipients)
    started = time.perf_counter()
    job = bulk.plan_broadcast(bulk.BulkPorts(engine, publisher), org, plan, None)
    return job.id, time.perf_counter() - started


def _copy_ceiling(owner: Any, count: int) -> float:
    """The same rows as planning writes (`db.repos.bulk.item_copy_lines`), COPYed into a bare
    temporary table: no index, constraint, policy or check of planning's."""
    from db.repos import bulk as repo

    params = {"components": COMPONENTS}
    items = [repo.NewItem(i, i // 500, f"1{i:011d}", None, params) for i in range(count)]
    with owner.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TEMP TABLE bulk_items_in (seq int, chunk int, recipient text, contact_id uuid, "
                "params jsonb, status text, error_code text, error_title text) ON COMMIT DROP"
            )
        )
        started = time.perf_counter()
        repo.copy_rows(conn, repo.COPY_ITEMS, repo.item_copy_lines(items))
        return time.perf_counter() - started


def _wait_job(engine: Any, org: uuid.UUID, job_id: uuid.UUID, timeout: float) -> Any:
    from domain.bulk import FINISHED
    from services import bulk

    deadline = time.monotonic() + timeout
    while True:
        job = bulk.get_job(engine, org, job_id)
        if job.status in FINISHED or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def _achieved(engine: Any, org: uuid.UUID, job_id: uuid.UUID) -> dict[str, Any]:
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
    span = float(row.span or 0)
    return {
        "sent": int(row.sent),
        "span_s": round(span, 2),
        "sends_per_s": round(row.sent / span, 1) if span else None,
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
    parser.add_argument("--plan-only", action="store_true", help="only the planning figure")
    args = parser.parse_args()

    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from config import get_settings
    from db import admin
    from db.engine import create_db_engine
    from devkit.jobs import RecordingPublisher
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
            _, plan_s = _plan(engine, RecordingPublisher(), org, args.plan_recipients, 0)
            report["planning"] = {
                "recipients": args.plan_recipients,
                "plan_s": round(plan_s, 2),
                "copy_ceiling_s": round(_copy_ceiling(owner, args.plan_recipients), 2),
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
                if mps == 1000 and args.skip_1000:
                    continue
                org, _ = _tenant(engine, mps, mps)
                job_id, _ = _plan(engine, publisher, org, args.recipients, 10_000_000 * (mps // 100))
                job = _wait_job(engine, org, job_id, timeout=args.recipients / mps * 4 + 120)
                figures = {"mps": mps, "status": job.status, "succeeded": job.counts.succeeded,
                           **_achieved(engine, org, job_id)}  # fmt: skip
                lost += args.recipients - job.counts.succeeded
                if mps == 1000:
                    in_flight = int(mps * args.latency_ms / 1000 * 2)
                    # aiohttp, as the send path: httpx's pool spends milliseconds of CPU per request
                    # at hundreds in flight (a ceiling of 40-60 req/s on this machine).
                    figures["aiohttp_ceiling_per_s"] = round(
                        _ceiling(fake_url, 1, args.recipients, in_flight), 1
                    )
                    figures["aiohttp_in_flight"] = in_flight
                report[name] = figures
            publisher.close()
            report["peak_rss_mb"] = {"outbound": _peak_rss_mb(workers[0].proc.pid),  # type: ignore[union-attr]
                                     "bulk": _peak_rss_mb(workers[1].proc.pid), "target_mb": 150}  # type: ignore[union-attr]  # fmt: skip
            log = httpx.get(f"{fake_url}/_fake/log", params={"summary": "1"}, timeout=30).json()
            report["duplicates"] = len(log["duplicates"])
            report["lost"] = lost
            print(json.dumps(report, indent=2))
        finally:
            for worker in workers:
                worker.stop()
            fake.stop()
            get_settings.cache_clear()
            admin.drop_database(get_settings())


if __name__ == "__main__":
    main()
