"""Deleting finished tasks once their result TTL has passed (``STREAMQ_RESULT_TTL_S``), in every
partition the worker consumes."""

from __future__ import annotations

from collections.abc import Callable

from shared.loops import PeriodicLoop
from shared.queue import Queue


class Janitor(PeriodicLoop):
    name = "janitor"

    def __init__(
        self,
        queue: Queue,
        interval_s: float = 5.0,
        batch: int = 500,
        partitions: Callable[[], list[Queue]] | None = None,
    ) -> None:
        super().__init__(interval_s)
        self.queue = queue
        self.batch = batch
        self.partitions = partitions or (lambda: [queue])  # every partition the worker consumes

    async def tick(self) -> None:
        for queue in self.partitions():
            while await queue.expire_due(self.batch) >= self.batch:
                pass
