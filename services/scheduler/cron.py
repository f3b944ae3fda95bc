"""Firing periodic schedules of every queue: each due tick once (fire.lua compares and sets the tick,
in the schedule's own queue slot), then sleeping until the next tick of any schedule of any queue
(capped at ``max_wait_s``, so new or resumed schedules, and new queues, are seen within that time)."""

from __future__ import annotations

import logging

from streamq.shared.loops import PeriodicLoop
from streamq.shared.schedules import ScheduleBook

log = logging.getLogger("streamq.scheduler")


class CronLoop(PeriodicLoop):
    name = "cron"

    def __init__(self, book: ScheduleBook, *, max_wait_s: float = 1.0) -> None:
        super().__init__(0.0)
        self.book = book
        self.max_wait_s = max_wait_s
        self.fired = 0

    async def tick(self) -> None:
        self.interval_s = self.max_wait_s  # kept if this pass fails (Redis down): no busy loop
        now_ms = await self._server_ms()
        for schedules, name, tick_ms in await self.book.due(now_ms):
            task_id = await schedules.fire(name, tick_ms, now_ms)
            if task_id is not None:
                self.fired += 1
                log.info(
                    "schedule fired",
                    extra={"schedule": name, "queue": schedules.keys.queue, "tick": tick_ms, "task": task_id},
                )
        next_ms = await self.book.next_due_ms()
        if next_ms is None:
            self.interval_s = self.max_wait_s
        else:
            now_ms = await self._server_ms()
            self.interval_s = min(self.max_wait_s, max(0.001, (next_ms - now_ms) / 1000))

    async def _server_ms(self) -> int:
        seconds, micros = await self.book.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000
