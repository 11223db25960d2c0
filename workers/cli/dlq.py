"""`adsapp dlq list|show|count|retry|discard`: dead letters from the command line.

The CLI acts as an operator (every tenant); `--org` narrows to one. Batch actions take the same
filters as `list` and `count`, show what they would touch with `--dry-run`, and ask before acting
unless `--yes`. A batch retry is a redrive task: the CLI runs it here with a live progress line
(`--detach` leaves it to the scheduler). `--json` prints machine-readable output.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy.engine import Engine

from config import get_settings
from db.engine import check_database, create_db_engine
from domain.deadletters import DeadLetterFilter, Status, filter_time
from services import deadletters as dl
from services import redrive
from services.publisher import BrokerJobPublisher

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

OPERATOR = dl.Scope.everyone()


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue")
    parser.add_argument("--actor")
    parser.add_argument("--org", type=UUID, help="only this organization's letters")
    parser.add_argument("--error-class")
    parser.add_argument("--text", help="case-insensitive substring of the error")
    parser.add_argument("--status", choices=[s.value for s in Status], default=Status.DEAD.value)
    parser.add_argument(
        "--since", type=filter_time, help="last failure at or after (ISO 8601; UTC if no offset)"
    )
    parser.add_argument("--until", type=filter_time, help="last failure before (ISO 8601; UTC if no offset)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _batch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "letter_id", nargs="?", type=UUID, help="one letter (else: every match of the filters)"
    )
    _filters(parser)
    parser.add_argument("--ids", help="comma-separated letter ids (with the other filters)")
    parser.add_argument("--dry-run", action="store_true", help="show how many would be affected; do nothing")
    parser.add_argument("--yes", action="store_true", help="do not ask before a batch action")


def register(commands: Commands) -> None:
    dlq = commands.add_parser("dlq", help="dead letters").add_subparsers(dest="dlq_command", required=True)
    ls = dlq.add_parser("list", help="dead letters, newest failure first")
    _filters(ls)
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--cursor", help="the cursor printed after a full page")
    ls.set_defaults(handler=_list)
    show = dlq.add_parser("show", help="one letter whole: message, traceback, chain")
    show.add_argument("letter_id", type=UUID)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)
    count = dlq.add_parser("count", help="how many letters match (what a batch action would take)")
    _filters(count)
    count.set_defaults(handler=_count)
    retry = dlq.add_parser("retry", help="re-enqueue one letter, or every match as a redrive")
    _batch(retry)
    retry.add_argument("--max-per-second", type=float, help="cap the redrive's publish rate")
    retry.add_argument(
        "--detach", action="store_true", help="create the redrive and leave it to the scheduler"
    )
    retry.set_defaults(handler=_retry)
    discard = dlq.add_parser("discard", help="discard one letter, or every match (kept for audit)")
    _batch(discard)
    discard.set_defaults(handler=_discard)


def _engine() -> Engine:
    engine = create_db_engine(get_settings(), pool_size=2)
    check_database(engine)
    return engine


def _filter(args: argparse.Namespace) -> DeadLetterFilter:
    ids = getattr(args, "ids", None)
    return DeadLetterFilter(
        queue=args.queue,
        actor=args.actor,
        organization_id=args.org,
        error_class=args.error_class,
        text=args.text,
        status=Status(args.status),
        since=args.since,
        until=args.until,
        ids=tuple(UUID(i.strip()) for i in ids.split(",") if i.strip()) if ids else None,
    )


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _print_json(value: Any) -> None:
    print(orjson.dumps(_plain(value)).decode())


def _short(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _list(args: argparse.Namespace) -> int:
    page = dl.list_dead_letters(_engine(), OPERATOR, _filter(args), limit=args.limit, cursor=args.cursor)
    if args.json:
        _print_json({"items": page.items, "next_cursor": page.next_cursor})
        return 0
    print(
        f"{'ID':36}  {'LAST FAILED (UTC)':19}  {'QUEUE':12}  {'ACTOR':24}  {'STATUS':9}  {'TRIES':>5}  ERROR"
    )
    for x in page.items:
        print(
            f"{x.id!s:36}  {x.last_failed_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}  {_short(x.queue, 12):12}  "
            f"{_short(x.actor, 24):24}  {x.status.value:9}  {x.attempts:>5}  {_short(x.error, 60)}"
        )
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")
    return 0


def _show(args: argparse.Namespace) -> int:
    d = dl.get_dead_letter(_engine(), OPERATOR, args.letter_id)
    if args.json:
        _print_json(d)
        return 0
    x = d.letter
    for label, value in (
        ("id", x.id), ("status", x.status.value), ("organization", x.organization_id or "-"),
        ("queue", x.queue), ("actor", x.actor), ("message id", x.message_id),
        ("error class", x.error_class), ("error", x.error_message),
        ("transient", "yes" if x.transient else "no"),
        ("attempts", x.attempts), ("sweeps", x.sweeps), ("first failed", x.first_failed_at),
        ("last failed", x.last_failed_at), ("retried at", x.retried_at or "-"),
        ("next sweep", d.next_sweep_at or "-"), ("args", orjson.dumps(d.args).decode()),
        ("kwargs", orjson.dumps(d.kwargs).decode()), ("options", orjson.dumps(d.options).decode()),
    ):  # fmt: skip
        print(f"{label:>13}: {value}")
    for link in d.chain:
        relation = "came from" if link.depth < 0 else "died again as"
        print(f"{relation:>13}: {link.id} ({link.status.value}, {link.error_class}, {link.last_failed_at})")
    print("\n" + (d.traceback or "(no traceback)"))
    return 0


def _count(args: argparse.Namespace) -> int:
    n = dl.count_dead_letters(_engine(), OPERATOR, _filter(args))
    if args.json:
        _print_json({"count": n})
    else:
        print(n)
    return 0


def _confirm(args: argparse.Namespace, verb: str, n: int) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise ValueError(f"{verb} {n} dead letters: pass --yes to confirm (or --dry-run to preview)")
    answer = input(f"{verb} {n} dead letters? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _held_back(args: argparse.Namespace, engine: Engine, f: DeadLetterFilter, verb: str) -> int | None:
    """Before a batch action: the exit code when it must not go ahead (a dry run, which prints how
    many it would take, or an operator who did not confirm); None to go ahead."""
    n = dl.count_dead_letters(engine, OPERATOR, f)
    if args.dry_run:
        _print_json({f"would_{verb}": n}) if args.json else print(f"would {verb} {n} dead letters")
        return 0
    if not _confirm(args, verb.capitalize(), n):
        print("nothing done")
        return 1
    return None


def _publisher() -> BrokerJobPublisher:
    return BrokerJobPublisher(
        RabbitmqBroker(url=get_settings().rabbitmq_url, confirm_delivery=True, middleware=[])
    )


def _progress(task: dl.Redrive, started: float) -> None:
    done = task.moved + task.failed + task.skipped
    rate = task.moved / max(time.monotonic() - started, 1e-6)
    sys.stderr.write(
        f"\rredrive {task.id}: {done}/{task.matched} (moved {task.moved}, failed {task.failed}, "
        f"skipped {task.skipped}) {rate:,.0f}/s "
    )
    sys.stderr.flush()


def _retry(args: argparse.Namespace) -> int:
    engine = _engine()
    if args.letter_id is not None:
        if args.dry_run:
            d = dl.get_dead_letter(engine, OPERATOR, args.letter_id)
            print(f"would retry {d.letter.id} ({d.letter.status.value})")
            return 0
        publisher = _publisher()
        try:
            result = dl.retry_dead_letter(engine, publisher, OPERATOR, args.letter_id)
        finally:
            publisher.close()
        if args.json:
            _print_json(result)
        else:
            print(f"{result.letter_id} {result.status.value} as message {result.message_id}")
        return 0
    f = _filter(args)
    if (held := _held_back(args, engine, f, "retry")) is not None:
        return held
    task = dl.start_redrive(engine, OPERATOR, f, max_per_second=args.max_per_second).redrive
    if args.detach:
        _print_json(task) if args.json else print(f"redrive {task.id} created: {task.matched} letters")
        return 0
    publisher = _publisher()
    started = time.monotonic()
    try:
        while True:
            ran = redrive.run_redrive(
                engine, publisher, redrive_id=task.id, budget_seconds=5.0,
                on_progress=None if args.json else (lambda t: _progress(t, started)),
            )  # fmt: skip
            if ran is None:  # the scheduler took it: follow it there
                time.sleep(0.5)
                task = dl.get_redrive(engine, OPERATOR, task.id)
                if task.finished_at is not None:
                    break
                continue
            task = ran.redrive
            if ran.done:
                break
    finally:
        publisher.close()
    if args.json:
        _print_json(task)
    else:
        _progress(task, started)
        sys.stderr.write("\n")
        print(f"redrive {task.id} {task.status.value}: moved {task.moved} of {task.matched}")
    return 0 if task.failed == 0 else 1


def _discard(args: argparse.Namespace) -> int:
    engine = _engine()
    if args.letter_id is not None:
        if args.dry_run:
            print(f"would discard {args.letter_id}")
            return 0
        letter = dl.discard_dead_letter(engine, OPERATOR, args.letter_id)
        _print_json(letter) if args.json else print(f"{letter.id} {letter.status.value}")
        return 0
    f = _filter(args)
    if (held := _held_back(args, engine, f, "discard")) is not None:
        return held
    done = dl.discard_dead_letters(engine, OPERATOR, f)
    _print_json({"discarded": done}) if args.json else print(f"discarded {done} dead letters")
    return 0
