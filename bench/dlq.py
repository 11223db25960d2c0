"""Dead-letter redrive benchmark: N dead letters put back on their queue by one batch retry, against
the ceiling of plain confirmed publishes of the same messages from the same process; and a
capped redrive, against its `max_per_second`. In a database and vhost of its own.

    .venv/bin/python -m bench.dlq [--letters 20000] [--capped-letters 3000] [--cap 500]

Prints JSON with:
- redrive_per_s: letters moved / the task's run time (claim, confirmed publish, mark retried, in
  batches), the task created (its letters frozen) beforehand, `freeze_s` apart;
- ceiling_per_s: the same messages (same queue, actor, args, options) published one by one with
  publisher confirms through the same broker client, no database: measured before and after the
  redrive, both shown, the ratio taken against their mean (target ≥ 0.8);
- capped: the rate a redrive with `max_per_second` held, and its error against the cap (≤ 5 %);
- lost: letters not on their queue afterwards (0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from typing import Any

BATCH = 1000


def _seed(engine: Any, queue: str, organization_id: uuid.UUID, count: int) -> None:
    from devkit.deadletters import letter_row, seed_letters

    for start in range(0, count, BATCH):
        seed_letters(
            engine, [letter_row(queue, organization_id, n) for n in range(start, min(count, start + BATCH))]
        )


def _ceiling(engine: Any, publisher: Any, queue: str, target_queue: str) -> float:
    """Publish the letters' messages as they are, confirmed, one by one: the most a redrive could do."""
    import sqlalchemy as sa

    from db.tables import dead_letters
    from db.uow import UnitOfWork
    from domain.ports import Job

    with UnitOfWork(engine, system=True) as uow:
        rows = list(uow.conn.execute(sa.select(dead_letters).where(dead_letters.c.queue == queue)).mappings())
    jobs = [
        Job(target_queue, r["actor"], tuple(r["args"]), dict(r["kwargs"]), options=dict(r["options"]),
            message_id=str(uuid.uuid4()))
        for r in rows
    ]  # fmt: skip
    started = time.perf_counter()
    for job in jobs:
        publisher.publish(job)
    return len(jobs) / (time.perf_counter() - started)


def _redrive(engine: Any, publisher: Any, queue: str, cap: float | None) -> dict[str, Any]:
    from domain.deadletters import DeadLetterFilter, Scope
    from services import deadletters as dl
    from services import redrive

    t0 = time.perf_counter()
    task = dl.start_redrive(
        engine, Scope.everyone(), DeadLetterFilter(queue=queue), max_per_second=cap
    ).redrive
    t1 = time.perf_counter()
    while True:
        ran = redrive.run_redrive(engine, publisher, redrive_id=task.id, budget_seconds=60.0)
        assert ran is not None
        if ran.done:
            break
    elapsed = time.perf_counter() - t1
    return {
        "matched": ran.redrive.matched, "moved": ran.redrive.moved, "failed": ran.redrive.failed,
        "freeze_s": round(t1 - t0, 3), "run_s": round(elapsed, 3), "per_s": ran.redrive.moved / elapsed,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=20_000)
    parser.add_argument("--capped-letters", type=int, default=3_000)
    parser.add_argument("--cap", type=float, default=500.0, help="max_per_second of the capped redrive")
    args = parser.parse_args()

    from bench.history import bench_database_url
    from config import get_settings
    from db import admin
    from db.engine import create_db_engine
    from db.repos.organizations import create_organization
    from db.uow import UnitOfWork
    from devkit.processes import queue_depth
    from devkit.services import rabbitmq_vhost
    from services.publisher import BrokerJobPublisher
    from workers.consumer import GatheredAckRabbitmqBroker

    with rabbitmq_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")) as amqp:
        os.environ.update(
            {"DATABASE_URL": bench_database_url(), "RABBITMQ_URL": amqp, "LOG_LEVEL": "WARNING"}
        )
        get_settings.cache_clear()
        settings = get_settings()
        try:
            admin.upgrade(settings)
            engine = create_db_engine(settings, pool_size=2)
            with UnitOfWork(engine, system=True) as uow:
                org = create_organization(uow.conn, "bench")
                uow.commit()
            _seed(engine, "bench_dlq", org, args.letters)
            _seed(engine, "bench_dlq_capped", org, args.capped_letters)
            broker = GatheredAckRabbitmqBroker(url=amqp, confirm_delivery=True, middleware=[])
            publisher = BrokerJobPublisher(broker)
            before = _ceiling(engine, publisher, "bench_dlq", "bench_dlq_ceiling")
            run = _redrive(engine, publisher, "bench_dlq", None)
            after = _ceiling(engine, publisher, "bench_dlq", "bench_dlq_ceiling")
            capped = _redrive(engine, publisher, "bench_dlq_capped", args.cap)
            ceiling = (before + after) / 2
            on_queue = queue_depth(amqp, "bench_dlq")
            report = {
                "command": " ".join([os.path.basename(sys.executable), "-m", "bench.dlq", *sys.argv[1:]]),
                "cores": os.cpu_count(),
                "letters": args.letters,
                "redrive_per_s": round(run["per_s"], 1),
                "redrive": {k: v for k, v in run.items() if k != "per_s"},
                "ceiling_per_s": {
                    "before": round(before, 1),
                    "after": round(after, 1),
                    "mean": round(ceiling, 1),
                },
                "ratio_to_ceiling": round(run["per_s"] / ceiling, 3),
                "ratio_target": 0.8,
                "capped": {
                    "max_per_second": args.cap,
                    "held_per_s": round(capped["per_s"], 1),
                    "error": round(abs(capped["per_s"] - args.cap) / args.cap, 4),
                    "error_target": 0.05,
                    "moved": capped["moved"],
                },
                "lost": args.letters - on_queue,
            }
            print(json.dumps(report, indent=2))
            broker.close()
            engine.dispose()
        finally:
            get_settings.cache_clear()
            admin.drop_database(get_settings())


if __name__ == "__main__":
    main()
