"""Each fault in turn under a steady mixed load, then: nothing lost, nothing doubled, nothing stuck.

The fleet is every line of the Procfile plus the fake Graph API, on private Postgres, RabbitMQ and
Redis instances (tests/faults/services.py), so stopping them disturbs nobody. A killed process is
started again at once, as a supervisor would; a stopped service after its outage. Recovery time is
from that moment until a probe webhook, a probe Stripe event and a probe send, each accepted after
it, are stored and sent.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from devkit.load import Ledger, Load
from devkit.processes import wait_for
from tests.faults import redis_restart as rr
from tests.faults.checks import Verdict, evaluate
from tests.faults.stack import BULK_MPS, PACED_MPS, ROOT, Stack, build_stack, remove_tree
from workers.cli import traffic

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

PG_OUTAGE_SECONDS = float(os.environ.get("FAULTS_PG_OUTAGE_SECONDS", "40"))
# The send actor's retry options (workers/actors/outbound.py; importing it would boot its engine).
SEND_RETRIES, SEND_MIN_BACKOFF_MS, SEND_MAX_BACKOFF_MS = 8, 1_000, 60_000
DRAIN_SECONDS = float(os.environ.get("FAULTS_DRAIN_SECONDS", "120"))
# Each phase starts a broadcast this large (a few chunks at the broadcasting number's rate).
BROADCAST_SIZE = int(os.environ.get("FAULTS_BROADCAST_SIZE", "200"))
# Only the faults whose name contains one of these (comma-separated), e.g. "Postgres down".
ONLY = [part.strip() for part in os.environ.get("FAULTS_ONLY", "").split(",") if part.strip()]
T0 = time.monotonic()


@dataclass
class Injected:
    """What an injection reports beyond the common checks: notes, and problems found on the way."""

    notes: str
    problems: list[str] = field(default_factory=list)


Inject = Callable[[Stack, Load], str | Injected]


@dataclass
class Row:
    fault: str
    injected_at: str
    verdict: Verdict
    recovery_seconds: float | None
    dead_letters: int
    notes: str = ""


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    built = build_stack()
    try:
        yield built
    finally:
        built.close()
        remove_tree(built.root)


@pytest.fixture(scope="module")
def load(stack: Stack) -> Iterator[Load]:
    running = Load(stack.target)
    yield running
    running.close()


def _probe(stack: Stack, lifted_at: float, timeout: float = 120.0) -> float | None:
    """Seconds from `lifted_at` until a webhook, a Stripe event and a send made after it are done."""
    t = stack.target
    client = traffic.IngressClient(t.ingress_url, app_secret=t.app_secret, stripe_secret=t.stripe_secret)
    deadline = lifted_at + timeout
    try:
        message = traffic.text_message(t.customers[0], "probe")
        event = traffic.subscription_event(t.billing_org, int(time.time()) + 10**6)
        send_id: str | None = None
        posted = stripe_posted = False
        key = uuid.uuid4().hex
        while time.monotonic() < deadline and not (posted and stripe_posted and send_id):
            if not posted:
                posted = client.webhook(traffic.delivery(t.phone_number_id, t.waba_id, [message])) == 200
            if not stripe_posted:
                stripe_posted = client.stripe(event) == 200
            if send_id is None:
                code, answer = client.send(t.api_key, {"to": t.customers[1], "type": "text",
                                                       "text": {"body": "probe"}}, key)  # fmt: skip
                send_id = str(answer["data"]["id"]) if code == 202 else None
            time.sleep(0.2)
        if not (posted and stripe_posted and send_id):
            return None
        probe = Ledger(wamids=[message["id"]], stripe_events=[event["id"]], sends=[send_id])

        def done() -> bool:
            v = evaluate(stack.dsn, stack.fake_url, probe)
            return v.stored == 3

        if not wait_for(done, max(1.0, deadline - time.monotonic()), interval=0.25):
            return None
        return round(time.monotonic() - lifted_at, 1)
    finally:
        client.close()


def _dead_letters(stack: Stack) -> int:
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])  # type: ignore[index]


def _burst(load: Load, stream: str, n: int) -> None:
    client = traffic.IngressClient(
        load.target.ingress_url, app_secret=load.target.app_secret, stripe_secret=load.target.stripe_secret
    )
    try:
        for _ in range(n):
            getattr(load, f"_one_{stream}")(client)
    finally:
        client.close()


def _fake(stack: Stack, method: str, path: str, body: object = None) -> None:
    httpx.request(method, f"{stack.fake_url}{path}", json=body, timeout=10).raise_for_status()


# Long enough for the resumed group to be working through its batch, far shorter than the batch.
KILL_AFTER_RESUME_SECONDS = 0.15


def kill_group(name: str, stream: str) -> Callable[[Stack, Load], str]:
    def inject(stack: Stack, load: Load) -> str:
        child = stack.fleet[name]

        def unfinished() -> int:
            v = evaluate(stack.dsn, stack.fake_url, load.ledger)
            # A broadcast's items are not lost while their job runs, only unfinished.
            return v.stuck if stream == "broadcast" else v.lost

        # A batch builds up while the group is frozen (its prefetch already in hand); it is killed
        # a moment after it resumes, so the kill lands mid-batch with messages in hand and
        # unacked. Watching its progress first took longer than a fast group needs for the batch.
        child.suspend()
        try:
            if stream == "broadcast":
                assert load.broadcast(300) == 202
            else:
                _burst(load, stream, 120)
            batch = unfinished()
        finally:
            child.resume()
        time.sleep(KILL_AFTER_RESUME_SECONDS)
        child.kill()
        at_kill = unfinished()
        child.start()  # the supervisor's restart
        stack.wait_ready(name)
        ready = time.monotonic() - child.started_at
        return f"killed with {at_kill} of a {batch}-item batch unfinished; ready {ready:.0f} s after restart"

    return inject


def kill_scheduler(stack: Stack, load: Load) -> str:
    time.sleep(2.0)
    child = stack.fleet["scheduler"]
    child.kill()
    time.sleep(3.0)
    child.start()
    stack.wait_ready("scheduler")
    return "down 3 s"


def stop_rabbitmq(stack: Stack, load: Load) -> str:
    stack.rabbitmq.stop()
    time.sleep(20)
    stack.rabbitmq.start()
    return "stopped 20 s, then booted"


def restart_postgres(stack: Stack, load: Load) -> str:
    stack.postgres.restart()
    return "pg_ctl restart -m fast"


def retry_budget_seconds() -> tuple[float, float]:
    """How long the send actor's retries would last if an outage spent them (Dramatiq's jittered
    backoff, `min_backoff * 2**n * U(1, 2)`, past `max_backoff` drawn from its upper half): the
    shortest and longest. The smallest budget of the fleet; the outage hold keeps it unspent."""
    low = high = 0.0
    for n in range(SEND_RETRIES):
        base, cap = SEND_MIN_BACKOFF_MS * 2**n, SEND_MAX_BACKOFF_MS
        low += (base if base <= cap else cap / 2) / 1000
        high += min(2 * base, cap) / 1000
    return low, high


def postgres_outage(stack: Stack, load: Load) -> str:
    stack.postgres.stop()
    time.sleep(PG_OUTAGE_SECONDS)
    stack.postgres.start()
    low, high = retry_budget_seconds()
    return f"down {PG_OUTAGE_SECONDS:.0f} s (the send actor's retries, unheld, would last {low:.0f}-{high:.0f} s)"


def restart_redis(stack: Stack, load: Load) -> Injected:
    """Killed and started empty while two numbers are held to their rate (a broadcast's, and one
    offered more sends than its rate) and the guarded number's breaker is open (its sends refused
    by the fake); then pacing, breakers, rate limits and live updates are checked against the
    fake's log (tests/faults/redis_restart.py)."""
    g = stack.guarded
    problems: list[str] = []
    notes: list[str] = []
    since = restart = time.time()
    # 80007 (the account's rate limit): counted against the number only, and never retried within
    # a call, so each call the breakers admit is one request at the fake.
    refuse = {"kind": "throttle", "code": 80007, "endpoint": "messages", "phone_number_id": g.number}
    _fake(stack, "POST", "/_fake/faults", refuse)
    guarded = rr.SideSends(stack, g, load.ledger, rr.GUARDED_SEND_INTERVAL).start()
    paced: rr.SideSends | None = None
    try:
        if rr.wait_open(stack, g.number) is None:
            problems.append("the guarded number's breaker never opened")
        # Both paced numbers have a backlog from now until seconds after the restart.
        assert load.broadcast(BROADCAST_SIZE * 3) == 202
        paced = rr.SideSends(stack, stack.paced, load.ledger, 1 / rr.PACED_OFFERED).start()
        calls, allowed, found = rr.calls_while_open(stack, g.number, rr.OPEN_WINDOW_SECONDS)
        problems += found
        notes.append(
            f"breaker open before: {calls} calls in {rr.OPEN_WINDOW_SECONDS:g} s (probes ≤ {allowed})"
        )
        before = rr.calls_at_fake(stack, g.number)
        restart = time.time()
        stack.redis.restart()
        relearnt = rr.wait_open(stack, g.number)
        if relearnt is None:
            problems.append("the guarded number's breaker was not re-learnt after the restart")
        else:
            notes.append(f"breaker state lost, re-learnt after {rr.calls_at_fake(stack, g.number) - before} "
                         f"calls in {relearnt:.1f} s")  # fmt: skip
            calls, allowed, found = rr.calls_while_open(stack, g.number, rr.OPEN_WINDOW_SECONDS)
            problems += found
            notes.append(f"open after: {calls} calls in {rr.OPEN_WINDOW_SECONDS:g} s (probes ≤ {allowed})")
    finally:
        guarded.stop()
        if paced is not None:
            paced.stop()
        _fake(stack, "DELETE", "/_fake/faults")
    for check in (lambda: rr.rate_limit_problems(stack), lambda: rr.live_update_problems(stack, load.ledger)):
        note, found = check()
        notes += [note] if note else []
        problems += found
    for number, mps in ((stack.target.bulk_number, BULK_MPS), (stack.paced.number, PACED_MPS)):
        note, found = rr.pacing_problems(stack, number, mps, since, restart)
        notes.append(note)
        problems += found
    return Injected("; ".join(["killed and started empty", *notes]), problems)


def graph_outage(stack: Stack, load: Load) -> str:
    _fake(stack, "POST", "/_fake/faults", {"kind": "outage", "endpoint": "messages"})
    time.sleep(30)
    _fake(stack, "DELETE", "/_fake/faults")
    return "503 for 30 s"


def graph_gateway(stack: Stack, load: Load) -> str:
    for rule in (
        # Past the client's 10 s read timeout: Meta has the message, the worker never hears.
        {"kind": "timeout", "endpoint": "messages", "hang_seconds": 11, "rate": 0.1, "commit": True},
        {"kind": "drop", "endpoint": "messages", "rate": 0.2, "commit": True},
        {"kind": "drop", "endpoint": "messages", "rate": 0.2, "commit": False},
        {"kind": "error", "endpoint": "messages", "http_status": 504, "code": 2, "rate": 0.2},
    ):
        _fake(stack, "POST", "/_fake/faults", rule)
    time.sleep(10)
    _fake(stack, "DELETE", "/_fake/faults")
    return "10 s: 504s, connections dropped before and after Meta accepted, read timeouts"


def media_full(stack: Stack, load: Load) -> str:
    filler = stack.media_dir / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    time.sleep(10)
    filler.unlink()
    return "media tmpfs full for 10 s"


def _phases(stack: Stack) -> list[tuple[str, Inject, bool]]:
    streams = {"inbound": "webhooks", "outbound": "sends", "billing": "stripe", "bulk": "broadcast"}
    phases: list[tuple[str, Inject, bool]] = [
        (f"kill -9 {g}", kill_group(g, streams.get(g, "webhooks")), False)
        for g in stack.groups()
        if stack.consumes(g)
    ]
    phases += [
        ("kill -9 scheduler", kill_scheduler, False),
        ("RabbitMQ stopped 20 s", stop_rabbitmq, False),
        ("Postgres restarted", restart_postgres, False),
        (f"Postgres down {PG_OUTAGE_SECONDS:.0f} s", postgres_outage, False),
        ("Redis restarted", restart_redis, False),
        ("Graph API outage 30 s", graph_outage, False),
        ("Graph 504s and drops", graph_gateway, False),
    ]
    if stack.media_is_tmpfs:
        phases.append(("media dir full", media_full, True))
    return [p for p in phases if not ONLY or any(part in p[0] for part in ONLY)]


def _run_phase(stack: Stack, load: Load, name: str, inject: Inject, media: bool) -> Row:
    dead_before = _dead_letters(stack)
    ledger = load.begin(media=media)
    assert load.broadcast(BROADCAST_SIZE) == 202, ledger.answers
    time.sleep(2.0)
    injected = time.monotonic()
    injected_result = inject(stack, load)
    outcome = Injected(injected_result) if isinstance(injected_result, str) else injected_result
    notes = outcome.notes
    lifted = time.monotonic()
    recovery = _probe(stack, lifted)
    time.sleep(2.0)
    load.pause()
    verdict = evaluate(stack.dsn, stack.fake_url, ledger)
    deadline = time.monotonic() + DRAIN_SECONDS
    while not verdict.clean and time.monotonic() < deadline:
        time.sleep(1.0)
        verdict = evaluate(stack.dsn, stack.fake_url, ledger)
    verdict.problems += outcome.problems
    dead = _dead_letters(stack) - dead_before
    if dead:
        verdict.problems.append(f"{dead} new dead letters")
    answers = ", ".join(
        f"{k}×{v}" for k, v in sorted(ledger.answers.items()) if not k.endswith((":200", ":202"))
    )
    return Row(name, f"t+{injected - T0:.0f}s", verdict, recovery, dead,
               notes + (f"; refused: {answers}" if answers else ""))  # fmt: skip


def table(rows: list[Row]) -> str:
    head = "| fault | injected at | accepted | stored | duplicates | lost | stuck | recovery | notes |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        v = r.verdict
        recovery = f"{r.recovery_seconds} s" if r.recovery_seconds is not None else "none"
        note = r.notes + ("; " + "; ".join(v.problems[:3]) if v.problems else "")
        lines.append(f"| {r.fault} | {r.injected_at} | {v.accepted} | {v.stored} | {v.duplicates} | "
                     f"{v.lost} | {v.stuck} | {recovery} | {note} |")  # fmt: skip
    return "\n".join(lines)


def test_every_fault_loses_nothing_and_doubles_nothing(stack: Stack, load: Load) -> None:
    rows: list[Row] = []
    for name, inject, media in _phases(stack):
        rows.append(_run_phase(stack, load, name, inject, media))
        print(f"[faults] {name}: {rows[-1].verdict}", flush=True)
        dead = stack.fleet.dead()
        assert not dead, f"processes died: {dead}\n" + "\n".join(stack.fleet[d].log_tail() for d in dead)
    report = table(rows)
    print("\n" + report)
    out = ROOT / "var" / "faults"
    out.mkdir(parents=True, exist_ok=True)
    (out / "last.md").write_text(f"{datetime.now(UTC).isoformat(timespec='seconds')}\n\n{report}\n")
    (out / "last.json").write_text(json.dumps([{
        "fault": r.fault, "injected_at": r.injected_at, "accepted": r.verdict.accepted, "stored": r.verdict.stored,
        "duplicates": r.verdict.duplicates, "lost": r.verdict.lost, "stuck": r.verdict.stuck,
        "recovery_seconds": r.recovery_seconds, "problems": r.verdict.problems, "notes": r.notes,
    } for r in rows], indent=2))  # fmt: skip
    bad = [r for r in rows if not r.verdict.clean or r.recovery_seconds is None]
    assert not bad, report
