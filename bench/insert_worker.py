"""An actor that does one Postgres `INSERT ... ON CONFLICT` per message and nothing else, on a
default Dramatiq RabbitMQ broker: the like-for-like of the reference machine's "one INSERT per
message" drain (3,300 messages/s), for the second baseline of bench/inbound.py.

    dramatiq bench.insert_worker --queues bench_insert

Each worker thread keeps one autocommit connection, so every message is one statement and one
commit, as in the reference figure. bench/inbound.py creates the table.
"""

from __future__ import annotations

import os
import threading

import dramatiq
import psycopg
from dramatiq.brokers.rabbitmq import RabbitmqBroker

broker = RabbitmqBroker(url=os.environ["RABBITMQ_URL"])
dramatiq.set_broker(broker)

_local = threading.local()


def _connection() -> psycopg.Connection[tuple[object, ...]]:
    conn: psycopg.Connection[tuple[object, ...]] | None = getattr(_local, "conn", None)
    if conn is None:
        url = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        conn = _local.conn = psycopg.connect(url, autocommit=True)
    return conn


@dramatiq.actor(queue_name="bench_insert", max_retries=0)
def insert(key: str, body: str, received_at: float | None = None) -> None:
    _connection().execute(
        "INSERT INTO bench_insert (key, body, received_at) VALUES (%s, %s, %s) ON CONFLICT (key) DO NOTHING",
        (key, body, received_at),
    )
