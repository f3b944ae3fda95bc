"""Moving due scheduled tasks onto their streams (promote.lua), waking for the next due time.

After each pass the loop sleeps exactly until the earliest due time (capped at ``max_wait_s``),
on this process's clock corrected by the server's (every reply carries the server time); a newly
scheduled task wakes it early through :class:`~services.scheduler.watcher.Watcher`. Several
replicas may run: the script enqueues each task once.
"""

from __future__ import annotations

import time

from shared import metrics
from shared.loops import PeriodicLoop
from shared.queue import Queue

CLOCK_SLACK_MS = 5  # read a little past the estimated server time; the script decides what is due


class Promoter(PeriodicLoop):
    name = "promoter"

    def __init__(self, queue: Queue, *, batch: int = 500, max_wait_s: float = 1.0) -> None:
        super().__init__(0.0)
        self.queue = queue
        self.keys = queue.keys
        self._common = queue.keys.common()
        self.batch = batch
        self.max_wait_s = max_wait_s
        self.offset_ms = 0  # server clock minus local clock
        self.promoted = 0
        self._lateness = metrics.SCHEDULER_LATENESS.labels(queue.keys.queue)

    async def tick(self) -> None:
        self.interval_s = self.max_wait_s  # kept if this pass fails (Redis down): no busy loop
        while True:
            now_ms, next_due_ms, moved = await self.promote_once()
            if moved < self.batch:
                break
        if next_due_ms < 0:
            self.interval_s = self.max_wait_s
        else:
            self.interval_s = min(self.max_wait_s, max(0.001, (next_due_ms - now_ms) / 1000))

    async def promote_once(self) -> tuple[int, int, int]:
        """One script call over the due candidates; returns (server now, next due or -1, how many
        candidates were read)."""
        estimate = int(time.time() * 1000) + self.offset_ms + CLOCK_SLACK_MS
        ids: list[str] = await self.queue.redis.zrangebyscore(
            self.keys.scheduled, "-inf", estimate, start=0, num=self.batch
        )
        keys = [*self._common, *(self.keys.task(i) for i in ids)]
        sent = time.time() * 1000
        reply = await self.queue.scripts.call("promote", keys, [self.queue.events_maxlen, *ids])
        received = time.time() * 1000
        now_ms, next_due_ms = int(reply[0]), int(reply[1])
        self.offset_ms = int(now_ms - (sent + received) / 2)
        for lateness in reply[2:]:
            self._lateness.observe(int(lateness) / 1000)
        self.promoted += len(reply) - 2
        return now_ms, next_due_ms, len(ids)
