"""`adsapp bulk list|status|pause|resume|cancel`: bulk jobs for operators (any organization).

adsapp bulk list [--org ORG_ID] [--kind K] [--status S] [--limit N]
adsapp bulk status JOB_ID [--follow] [--interval SECONDS]
adsapp bulk pause JOB_ID
adsapp bulk resume JOB_ID [--scope pending|failed]
adsapp bulk cancel JOB_ID
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO
from uuid import UUID

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy.engine import Engine

from config import get_settings
from db.engine import create_db_engine
from domain import bulk as rules
from services import bulk
from services.errors import Refused
from services.publisher import BrokerJobPublisher

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

BAR_WIDTH = 30


def register(commands: Commands) -> None:
    group = commands.add_parser("bulk", help="bulk jobs").add_subparsers(dest="bulk_command", required=True)
    ls = group.add_parser("list", help="bulk jobs, newest first")
    ls.add_argument("--org", type=UUID, default=None, help="one organization (default: all)")
    ls.add_argument("--kind", choices=rules.KINDS)
    ls.add_argument("--status", choices=rules.JOB_STATUSES)
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(handler=_list)
    status = group.add_parser("status", help="a job's counts, rate and ETA")
    status.add_argument("job_id", type=UUID)
    status.add_argument("--follow", action="store_true", help="a live progress bar until the job ends")
    status.add_argument("--interval", type=float, default=1.0)
    status.set_defaults(handler=_status)
    for name, text in (("pause", "pause a job"), ("cancel", "cancel a job")):
        sub = group.add_parser(name, help=text)
        sub.add_argument("job_id", type=UUID)
        sub.set_defaults(handler=_control)
    resume = group.add_parser("resume", help="resume a paused job, or re-send its failed items")
    resume.add_argument("job_id", type=UUID)
    resume.add_argument("--scope", choices=("pending", "failed"), default="pending")
    resume.set_defaults(handler=_control)


@contextmanager
def _engine() -> Iterator[Engine]:
    engine = create_db_engine(get_settings(), pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()


def _done(job: bulk.JobSummary) -> int:
    c = job.counts
    return c.succeeded + c.failed + c.skipped + c.cancelled


def line(job: bulk.JobSummary) -> str:
    return (
        f"{job.id}  {job.kind:<20} {job.status:<22} {_done(job)}/{job.counts.total}  "
        f"{job.created_at.isoformat(timespec='seconds')}"
    )


def describe(job: bulk.JobSummary) -> str:
    c = job.counts
    rows = [
        f"id          {job.id}",
        f"kind        {job.kind}",
        f"status      {job.status}",
        f"number      {job.phone_number_id or '-'}",
        f"total       {c.total}",
        f"succeeded   {c.succeeded}",
        f"failed      {c.failed}",
        f"skipped     {c.skipped}",
        f"cancelled   {c.cancelled}",
        f"pending     {c.pending}",
    ]
    if c.delivered is not None:
        rows += [f"delivered   {c.delivered}", f"read        {c.read}"]
    rows += [
        f"created     {job.created_at.isoformat(timespec='seconds')}",
        f"started     {job.started_at.isoformat(timespec='seconds') if job.started_at else '-'}",
        f"finished    {job.finished_at.isoformat(timespec='seconds') if job.finished_at else '-'}",
        f"rate        {f'{job.rate_per_second:.1f}/s' if job.rate_per_second is not None else '-'}",
        f"eta         {f'{job.eta_seconds:.0f}s' if job.eta_seconds is not None else '-'}",
    ]
    return "\n".join(rows)


def progress_bar(job: bulk.JobSummary) -> str:
    total = max(1, job.counts.total)
    filled = int(BAR_WIDTH * _done(job) / total)
    rate = f" {job.rate_per_second:.1f}/s" if job.rate_per_second else ""
    eta = f" eta {job.eta_seconds:.0f}s" if job.eta_seconds is not None else ""
    return (
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {_done(job)}/{job.counts.total} "
        f"{job.status} ok={job.counts.succeeded} failed={job.counts.failed} "
        f"skipped={job.counts.skipped}{rate}{eta}"
    )


def _list(args: argparse.Namespace) -> int:
    with _engine() as engine:
        page = bulk.list_jobs(
            engine, args.org, after=None, limit=args.limit, kind=args.kind, status=args.status
        )
    for job in page.rows:
        print(line(job))
    return 0


def _status(args: argparse.Namespace) -> int:
    with _engine() as engine:
        try:
            org = bulk.organization_of(engine, args.job_id)
            job = bulk.get_job(engine, org, args.job_id)
            if not args.follow:
                print(describe(job))
                return 0
            return follow(engine, org, job, args.interval, sys.stdout)
        except Refused as exc:
            print(f"adsapp: error: {exc.message or exc.code}", file=sys.stderr)
            return 1


def follow(engine: Engine, org: UUID, job: bulk.JobSummary, interval: float, out: TextIO) -> int:
    """Redraw the progress bar on one line until the job ends; 0 if it completed cleanly."""
    while True:
        out.write("\r" + progress_bar(job).ljust(100))
        out.flush()
        if job.status in rules.FINISHED:
            out.write("\n")
            return 0 if job.status == rules.COMPLETED else 1
        time.sleep(interval)
        job = bulk.get_job(engine, org, job.id)


def _control(args: argparse.Namespace) -> int:
    settings = get_settings()
    publisher = BrokerJobPublisher(
        RabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=True, middleware=[])
    )
    try:
        with _engine() as engine:
            ports = bulk.BulkPorts(engine, publisher)
            try:
                org = bulk.organization_of(engine, args.job_id)
                if args.bulk_command == "pause":
                    job = bulk.pause(ports, org, args.job_id)
                elif args.bulk_command == "cancel":
                    job = bulk.cancel(ports, org, args.job_id)
                else:
                    job = bulk.resume(ports, org, args.job_id, args.scope)
            except Refused as exc:
                print(
                    f"adsapp: error: {exc.code}: {exc.message or ''} {exc.details or ''}".rstrip(),
                    file=sys.stderr,
                )
                return 1
            print(line(job))
            return 0
    finally:
        publisher.close()
