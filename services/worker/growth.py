"""Picking up grown partition counts of the consumed queues, off the consumer's hot path.

Every ``interval_s`` (the queue registry's cache period) the consumer's sources re-read the queue
configs; a new partition gets its consumer group before it is read, and the watchers start one
blocking reader for it. The run loop itself never waits on this round trip: a worker woken by a
burst reads at once.
"""

from __future__ import annotations

from streamq.services.worker.consumer import Consumer
from streamq.shared.loops import PeriodicLoop


class Growth(PeriodicLoop):
    name = "growth"

    def __init__(self, consumer: Consumer, interval_s: float = 1.0) -> None:
        super().__init__(interval_s)
        self.consumer = consumer

    async def tick(self) -> None:
        await self.consumer.refresh()
