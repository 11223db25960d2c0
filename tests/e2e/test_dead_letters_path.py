"""Dead letters over real processes: a `dramatiq workers.app` inbound worker dead-letters an
unreadable delivery at once; an operator key lists and retries it over the uvicorn ingress's API
(it dies again, as a new letter linked to the first); the scheduler process runs a batch redrive."""

from __future__ import annotations

import uuid
from contextlib import ExitStack

import httpx
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy.engine import Engine

from config import Settings
from db.repos.organizations import add_api_key
from db.uow import UnitOfWork
from devkit.processes import Process, start_ingress, start_scheduler, start_worker, wait_for
from devkit.tenants import make_tenant
from domain import jobs
from domain.apikeys import generate_key
from domain.ports import Job
from services.publisher import BrokerJobPublisher

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _args(url: str, auth: dict[str, str], letter_id: str) -> object:
    return httpx.get(f"{url}/api/v1/dead-letters/{letter_id}", headers=auth, timeout=10).json()["data"][
        "args"
    ]


def _stopped_cleanly(process: Process) -> None:
    assert process.stop() in (0, -15), process.log()[-3000:]


def test_an_unreadable_delivery_is_dead_lettered_retried_and_redriven(
    settings: Settings, engine: Engine
) -> None:
    tenant = make_tenant(engine)
    key = generate_key()
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        add_api_key(uow.conn, tenant.organization_id, "ops", key, ("dead-letters:read", "dead-letters:write"),
                    operator=True)  # fmt: skip
        uow.commit()
    auth = {"Authorization": f"Bearer {key.plaintext}"}
    marker = f"not json {uuid.uuid4().hex}"
    with ExitStack() as stack:
        # Every process is stopped, whatever fails first: a worker left running would consume the
        # queues of the tests after this one (they share the session's vhost).
        worker = start_worker([jobs.INBOUND_QUEUE, jobs.MEDIA_QUEUE], processes=1, threads=2)
        stack.callback(worker.stop)
        ingress, url = start_ingress()
        stack.callback(ingress.stop)
        broker = RabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=True, middleware=[])
        stack.callback(broker.close)
        BrokerJobPublisher(broker).publish(
            Job(jobs.INBOUND_QUEUE, jobs.WHATSAPP_DELIVERY_ACTOR, [marker], {})
        )
        flt = {"queue": jobs.INBOUND_QUEUE, "error_class": "InvalidPayload"}

        def letters() -> list[dict[str, object]]:
            page = httpx.get(f"{url}/api/v1/dead-letters", params=flt, headers=auth, timeout=10).json()
            return [x for x in page["data"] if _args(url, auth, str(x["id"])) == [marker]]

        assert wait_for(lambda: len(letters()) >= 1, 30), worker.log()[-3000:]
        [first] = letters()
        assert first["attempts"] == 1 and first["transient"] is False
        retried = httpx.post(f"{url}/api/v1/dead-letters/{first['id']}/retry", headers=auth, timeout=10)
        assert retried.status_code == 202, retried.text

        def second() -> dict[str, object] | None:
            page = httpx.get(f"{url}/api/v1/dead-letters", params=flt, headers=auth, timeout=10).json()
            return next((x for x in page["data"] if x["retried_from"] == first["id"]), None)

        assert wait_for(lambda: second() is not None, 30), worker.log()[-3000:]
        again = second()
        assert again is not None
        detail = httpx.get(f"{url}/api/v1/dead-letters/{again['id']}", headers=auth, timeout=10).json()[
            "data"
        ]
        assert detail["args"] == [marker] and [c["id"] for c in detail["chain"]] == [first["id"]]

        task = httpx.post(
            f"{url}/api/v1/dead-letters/retry", json={"ids": [again["id"]]}, headers=auth, timeout=10
        ).json()["data"]
        assert task["matched"] == 1
        scheduler = start_scheduler()
        stack.callback(_stopped_cleanly, scheduler)

        def finished() -> bool:
            got = httpx.get(f"{url}/api/v1/dead-letter-redrives/{task['id']}", headers=auth, timeout=10)
            return bool(got.json()["data"]["status"] == "finished")

        assert wait_for(finished, 30), scheduler.log()[-3000:]
        assert (
            httpx.get(f"{url}/api/v1/dead-letter-redrives/{task['id']}", headers=auth, timeout=10).json()[
                "data"
            ]["moved"]
            == 1
        )
