"""Deleting finished tasks once their result TTL has passed (``STREAMQ_RESULT_TTL_S``)."""

from __future__ import annotations

from shared.loops import PeriodicLoop
from shared.queue import Queue


class Janitor(PeriodicLoop):
    name = "janitor"

    def __init__(self, queue: Queue, interval_s: float = 5.0, batch: int = 500) -> None:
        super().__init__(interval_s)
        self.queue = queue
        self.batch = batch

    async def tick(self) -> None:
        while await self.queue.expire_due(self.batch) >= self.batch:
            pass
