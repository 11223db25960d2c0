"""A JobPublisher that keeps what it was given, for handler tests that assert follow-up jobs."""

from __future__ import annotations

from domain.ports import Job


class RecordingPublisher:
    def __init__(self, fail: bool = False) -> None:
        self.jobs: list[Job] = []
        self.fail = fail

    def publish(self, job: Job) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.jobs.append(job)
