"""What kind of failure an exception is, for retries and dead letters: foreign exceptions
(SQLAlchemy, psycopg, redis, pika, Dramatiq) are judged here, at the workers' boundary.

- *Infrastructure*: Postgres, RabbitMQ or Redis unreachable (or a connection broken mid-way). The
  job itself is fine; it waits the outage out without spending its retry budget.
- *Transient*: worth trying again later (infrastructure, our `TransientError`s, time limits): the
  scheduled sweep may redrive such a dead letter.
- Everything else (permanent errors, bugs, ambiguous sends) is left to an operator.
"""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq.errors
import pika.exceptions
import psycopg
import psycopg.errors
import redis.exceptions
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy import exc as sa_exc

from domain.errors import GraphAmbiguousOutcome, PermanentError, TransientError

_INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # the pool found no connection in time
    psycopg.OperationalError,
    psycopg.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    dramatiq.errors.BrokerConnectionError,
    ConnectionError,
    TimeoutError,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 10:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# Postgres answered, and said no for now: transient, but no outage (a statement that always times
# out must spend its retries, not wait hours for a database that is up).
_DATABASE_UP: tuple[type[BaseException], ...] = (
    psycopg.errors.QueryCanceled,
    psycopg.errors.TransactionRollback,
)


def _database_up(exc: BaseException) -> bool:
    return any(
        isinstance(link, _DATABASE_UP) or isinstance(getattr(link, "orig", None), _DATABASE_UP)
        for link in _chain(exc)
    )


def is_infrastructure(exc: BaseException) -> bool:
    """A dependency was unreachable; our own classes decide for themselves first."""
    if isinstance(exc, PermanentError | TransientError | GraphAmbiguousOutcome) or _database_up(exc):
        return False
    for link in _chain(exc):
        if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
            return True
        if isinstance(link, _INFRASTRUCTURE):
            return True
    return False


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, PermanentError | GraphAmbiguousOutcome):
        return False
    return isinstance(exc, TransientError | TimeLimitExceeded) or _database_up(exc) or is_infrastructure(exc)


def error_class(exc: BaseException) -> str:
    return type(exc).__name__
