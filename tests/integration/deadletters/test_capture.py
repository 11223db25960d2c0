"""What dies is captured whole, after exactly its retry budget (or at once when permanent); a
failed retry publish and a long Postgres outage lose nothing and burn no budget."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from config import Settings
from db.repos.organizations import create_organization
from db.uow import UnitOfWork
from devkit.processes import queue_depth, wait_for
from domain.errors import PermanentError, TransientError
from services import deadletters as dl
from tests.support.deadletter_fleet import OPERATOR, Fleet
from tests.support.tcpproxy import TcpProxy
from workers import resources

pytestmark = pytest.mark.integration


class Flaky(TransientError):
    pass


def test_a_job_that_always_fails_lands_in_xq_and_dead_letters_after_exactly_its_budget(
    fleet: Fleet, engine: Engine
) -> None:
    with UnitOfWork(engine, system=True) as uow:
        org = str(create_organization(uow.conn, "always-fails"))
        uow.commit()

    def always(key: str, organization_id: str) -> None:
        raise Flaky(f"upstream still down for {key}")

    actor = fleet.actor(always)
    fleet.start()
    message = actor.send("k1", organization_id=org)
    [letter] = fleet.wait_letters(1)
    assert fleet.calls["k1"] == 3  # the first run and max_retries=2 retries, no more
    assert wait_for(lambda: fleet.xq_depth() == 1, 10)
    detail = dl.get_dead_letter(resources.current().engine, OPERATOR, letter.id)
    assert detail.letter.message_id == message.message_id
    assert detail.letter.attempts == 3
    assert detail.letter.error_class == "Flaky" and detail.letter.transient
    assert detail.letter.error_message == "upstream still down for k1"
    assert detail.args == ["k1"] and detail.kwargs == {"organization_id": org}
    assert detail.traceback is not None and "upstream still down" in detail.traceback
    assert detail.letter.queue == fleet.queue and detail.letter.actor == actor.actor_name
    assert detail.letter.status is dl.Status.DEAD
    assert detail.letter.first_failed_at <= detail.letter.last_failed_at
    assert detail.next_sweep_at is not None  # transient: the sweep will try it later


def test_a_permanent_error_lands_at_once(fleet: Fleet) -> None:
    def refuse(key: str) -> None:
        raise PermanentError("template 132001 does not exist")

    actor = fleet.actor(refuse, throws=(PermanentError,))
    fleet.start()
    actor.send("p1")
    [letter] = fleet.wait_letters(1)
    assert fleet.calls["p1"] == 1
    assert letter.attempts == 1 and not letter.transient
    detail = dl.get_dead_letter(resources.current().engine, OPERATOR, letter.id)
    assert detail.traceback is not None and "132001" in detail.traceback
    assert detail.next_sweep_at is None  # never swept
    assert wait_for(lambda: fleet.xq_depth() == 1, 10)


def test_a_message_too_old_to_run_is_recorded_too(fleet: Fleet) -> None:
    actor = fleet.actor(lambda key: None, max_age=60_000)
    fleet.start()
    stale = actor.message("aged").copy(message_timestamp=int(time.time() * 1000) - 120_000)
    fleet.broker.enqueue(stale)
    [letter] = fleet.wait_letters(1)
    assert fleet.calls["aged"] == 0
    assert letter.error_class == "SkipMessage" and letter.message_id == stale.message_id
    assert wait_for(lambda: fleet.xq_depth() == 1, 10)


def _vhost(settings: Settings) -> str:
    return unquote(urlsplit(settings.rabbitmq_url).path.lstrip("/")) or "/"


def test_a_failed_retry_publish_keeps_the_message(fleet: Fleet, settings: Settings) -> None:
    """The delay queue refuses the retry (RabbitMQ nacks it): the original is rejected into .XQ and
    recorded, never acked and lost."""
    policy = f"refuse-{fleet.queue}"
    subprocess.run(
        [
            "rabbitmqctl", "-q", "set_policy", "-p", _vhost(settings), "--apply-to", "queues", policy,
            f"^{fleet.queue}\\.DQ$", '{"max-length": 0, "overflow": "reject-publish"}',
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    try:

        def once(key: str) -> None:
            raise Flaky("first try fails")

        actor = fleet.actor(once)
        fleet.start()
        actor.send("r1")
        [letter] = fleet.wait_letters(1)
        assert fleet.calls["r1"] == 1
        assert letter.transient  # the sweep will redrive it once the broker takes publishes again
        assert "could not be enqueued" in (letter.error_message or "")
        assert wait_for(lambda: fleet.xq_depth() == 1, 10)
        assert queue_depth(settings.rabbitmq_url, fleet.queue) == 0
    finally:
        subprocess.run(
            ["rabbitmqctl", "-q", "clear_policy", "-p", _vhost(settings), policy],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip


def _postgres_behind_a_proxy(settings: Settings) -> tuple[TcpProxy, Settings]:
    """Settings whose every Postgres login (the application role's and the system scope's own
    role's) goes through one proxy, so stopping it takes the whole database away from the worker."""
    parts = urlsplit(settings.database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()

    def proxied(url: str) -> str:
        given = urlsplit(url)
        credentials = given.netloc.rpartition("@")[0]
        return given._replace(netloc=f"{credentials}@127.0.0.1:{proxy.port}").geturl()

    through_proxy = settings.model_copy(
        update={
            "database_url": proxied(settings.database_url),
            "database_system_url": SecretStr(proxied(settings.system_sqlalchemy_url)),
        }
    )
    return proxy, through_proxy


def test_a_long_postgres_outage_does_not_burn_retries(settings: Settings, engine: Engine) -> None:
    """The worker's Postgres goes away for longer than its whole retry budget would last; every
    job waits it out and is done once it is back, with no dead letter."""
    proxy, through_proxy = _postgres_behind_a_proxy(settings)
    fleet = Fleet(settings, max_retries=2)
    done: set[str] = set()
    lock = threading.Lock()

    def create_org(key: str) -> None:
        with UnitOfWork(resources.current().engine, system=True) as uow:
            create_organization(uow.conn, f"outage-{key}")
            uow.commit()
        with lock:
            done.add(key)

    actor = fleet.actor(create_org)
    res = resources.build(fleet.broker, through_proxy)
    try:
        fleet.start(res)
        proxy.stop()
        keys = [f"{fleet.queue}-{i}" for i in range(5)]
        for key in keys:
            actor.send(key)
        # Each job fails far more often than its budget (3 runs) would allow.
        assert wait_for(lambda: all(fleet.calls[k] >= 8 for k in keys), 60)
        proxy.start()
        assert wait_for(lambda: done == set(keys), 60), f"done: {sorted(done)}"
        held: dict[str, Any] = {}
        with UnitOfWork(engine, system=True) as uow:
            from sqlalchemy import func, select

            from db.tables import dead_letters, organizations

            held["letters"] = uow.conn.execute(
                select(func.count()).select_from(dead_letters).where(dead_letters.c.queue == fleet.queue)
            ).scalar_one()
            held["orgs"] = uow.conn.execute(
                select(func.count())
                .select_from(organizations)
                .where(organizations.c.name.in_([f"outage-{k}" for k in keys]))
            ).scalar_one()
        assert held == {"letters": 0, "orgs": 5}
        assert fleet.xq_depth() == 0
    finally:
        fleet.stop()
        proxy.stop()


def test_an_outage_longer_than_the_hold_spends_the_budget_and_ends_in_xq(settings: Settings) -> None:
    """The hold is bounded: past it, the job spends its retries and dies (into .XQ, since the row
    cannot be written while the database is still away), instead of looping for ever."""
    proxy, through_proxy = _postgres_behind_a_proxy(settings)
    fleet = Fleet(settings, max_retries=2, outage_hold=0.5)

    def needs_db(key: str) -> None:
        with UnitOfWork(resources.current().engine, system=True) as uow:
            uow.commit()

    actor = fleet.actor(needs_db)
    try:
        fleet.start(resources.build(fleet.broker, through_proxy))
        proxy.stop()
        actor.send("held")
        assert wait_for(lambda: fleet.xq_depth() == 1, 60)
        calls = fleet.calls["held"]
        assert calls >= 4  # held at least once, then the first run's budget: 3 runs
        fleet.settle()
        assert fleet.calls["held"] == calls  # and nothing after it died
    finally:
        fleet.stop()
        proxy.stop()
