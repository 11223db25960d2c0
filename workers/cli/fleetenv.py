"""Small helpers for commands that run a fleet of their own: free ports, queue depths, waiting."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable

import pika
import pika.exceptions


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def queue_depths(amqp_url: str, queues: Iterable[str]) -> dict[str, int | str]:
    """Ready messages per queue ("-" when not declared, "down" when the broker does not answer)."""
    names = list(queues)
    try:
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    except pika.exceptions.AMQPError:
        return dict.fromkeys(names, "down")
    depths: dict[str, int | str] = {}
    try:
        for name in names:
            channel = connection.channel()
            try:
                depths[name] = int(channel.queue_declare(name, passive=True).method.message_count)
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:
                depths[name] = "-"
    finally:
        if connection.is_open:
            connection.close()
    return depths
