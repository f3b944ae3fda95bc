"""What a running handler and its worker tell each other besides the outcome: cancel requests (in)
and progress reports (out, see :mod:`streamq.services.worker.progress`). One per worker, shared by every
:class:`~streamq.services.worker.registry.TaskContext` it makes; sync handlers read and write it from their
threads (a set membership test and a dict assignment under a lock)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from streamq.services.worker.jobs import Delivery

MAX_PROGRESS_MESSAGE = 200


@dataclass(frozen=True, slots=True)
class Report:
    delivery: Delivery
    fraction: float
    message: str


class Control:
    def __init__(self) -> None:
        self.cancels: set[str] = set()  # ids of this worker's running tasks asked to stop
        self._reports: dict[str, Report] = {}  # task id -> its latest progress not yet sent
        self._lock = threading.Lock()

    def cancelled(self, task_id: str) -> bool:
        return task_id in self.cancels

    def report(self, delivery: Delivery, fraction: float, message: str = "") -> None:
        """Keep the latest progress of a task (a later one replaces it) until the progress loop sends it."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must be a fraction in [0, 1], got {fraction!r}")
        if len(message) > MAX_PROGRESS_MESSAGE:
            raise ValueError(f"a progress message is at most {MAX_PROGRESS_MESSAGE} characters, got {len(message)}")
        with self._lock:
            self._reports[delivery.task_id] = Report(delivery, float(fraction), message)

    def take_reports(self) -> list[Report]:
        """The reports kept since the last call (each task's latest), and forget them."""
        with self._lock:
            reports, self._reports = list(self._reports.values()), {}
        return reports
