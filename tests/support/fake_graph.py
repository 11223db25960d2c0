"""The fake Graph API served over real HTTP from a background thread, for tests and benchmarks.

with running_fake_graph() as fake:
    client = GraphClient(fake.url, "v21.0")
    fake.add_fault(kind="throttle", count=2)
    ...
    assert fake.log()["duplicates"] == []
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from workers.fake_graph.app import create_app
from workers.fake_graph.state import FakeConfig, FakeGraphState


class RunningFakeGraph:
    def __init__(self, url: str, state: FakeGraphState) -> None:
        self.url = url
        self.state = state  # shared with the server thread: read it, change it over HTTP
        self._control = httpx.Client(base_url=url, timeout=5.0)

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        return self._post("/_fake/faults", rule)

    def clear_faults(self) -> None:
        self._control.delete("/_fake/faults").raise_for_status()

    def configure(self, **options: Any) -> dict[str, Any]:
        return self._post("/_fake/config", options)

    def seed_templates(self, waba_id: str, templates: list[dict[str, Any]]) -> None:
        self._post("/_fake/templates", {"waba_id": waba_id, "templates": templates})

    def seed_media(
        self, media_id: str, *, mime_type: str = "image/jpeg", file_size: int | None = None
    ) -> None:
        self._post("/_fake/media", {"id": media_id, "mime_type": mime_type, "file_size": file_size})

    def reset(self, everything: bool = False) -> None:
        self._post("/_fake/reset", {"all": everything})

    def log(self, *, summary: bool = False, phone_number_id: str | None = None) -> dict[str, Any]:
        params: dict[str, str] = {"summary": "1" if summary else "0"}
        if phone_number_id is not None:
            params["phone_number_id"] = phone_number_id
        response = self._control.get("/_fake/log", params=params)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def sends(self, phone_number_id: str | None = None) -> int:
        """Accepted sends so far."""
        return int(self.log(summary=True, phone_number_id=phone_number_id)["total"])

    def requests(self, endpoint: str = "messages", target: str | None = None) -> int:
        """Requests received (accepted or not) by an endpoint, for one target id or all."""
        counts: dict[str, int] = self.log(summary=True)["requests"].get(endpoint, {})
        return counts.get(target, 0) if target is not None else sum(counts.values())

    def close(self) -> None:
        self._control.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._control.post(path, json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@contextmanager
def running_fake_graph(
    config: FakeConfig | None = None, *, startup_timeout: float = 10.0
) -> Iterator[RunningFakeGraph]:
    """Serve a fresh fake on a free local port for the duration of the block."""
    state = FakeGraphState(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(state=state),
            log_level="critical",  # injected connection drops are logged as app errors otherwise
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="fake-graph")
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake Graph API did not start")
        time.sleep(0.01)
    running = RunningFakeGraph(f"http://127.0.0.1:{port}", state)
    try:
        yield running
    finally:
        running.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
