"""The dead-letter metrics: deaths counted by queue, actor and error class where they happen; the
scheduler's gauges read from Postgres and RabbitMQ."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine

from devkit.deadletters import letter_row, seed_letters
from devkit.processes import wait_for
from domain.errors import PermanentError
from tests.support.deadletter_fleet import Fleet
from workers import resources
from workers.deadletter_tasks import set_gauges

pytestmark = pytest.mark.integration


def _value(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_deaths_are_counted_and_the_gauges_show_what_waits(fleet: Fleet, engine: Engine) -> None:
    def refuse(key: str) -> None:
        raise PermanentError(key)

    actor = fleet.actor(refuse, throws=(PermanentError,))
    fleet.start()
    actor.send("m1")
    fleet.wait_letters(1)
    labels = {"queue": fleet.queue, "actor": actor.actor_name, "error_class": "PermanentError"}
    assert _value("adsapp_dead_letters_total", labels) == 1
    seed_letters(engine, [letter_row(fleet.queue, None, n) for n in range(3)])
    assert wait_for(lambda: fleet.xq_depth() == 1, 10)
    set_gauges(resources.current())
    assert _value("adsapp_dead_letters_current", labels) == 1
    assert (
        _value(
            "adsapp_dead_letters_current",
            {**labels, "error_class": "Broken", "actor": f"{fleet.queue}_actor"},
        )
        == 3
    )
    assert _value("adsapp_dead_letters_xq_depth", {"queue": fleet.queue}) == 1
    assert _value("adsapp_dead_letters_oldest_age_seconds", {}) > 0
