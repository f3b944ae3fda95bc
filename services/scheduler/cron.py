"""Firing periodic schedules: each due tick once (fire.lua compares and sets the tick), then
sleeping until the next tick of any schedule (capped at ``max_wait_s``, so new or resumed
schedules are seen within that time)."""

from __future__ import annotations

import logging

from shared.loops import PeriodicLoop
from shared.schedules import Schedules

log = logging.getLogger("streamq.scheduler")


class CronLoop(PeriodicLoop):
    name = "cron"

    def __init__(self, schedules: Schedules, *, max_wait_s: float = 1.0) -> None:
        super().__init__(0.0)
        self.schedules = schedules
        self.max_wait_s = max_wait_s
        self.fired = 0

    async def tick(self) -> None:
        self.interval_s = self.max_wait_s  # kept if this pass fails (Redis down): no busy loop
        now_ms = await self._server_ms()
        for name, tick_ms in await self.schedules.due(now_ms):
            task_id = await self.schedules.fire(name, tick_ms, now_ms)
            if task_id is not None:
                self.fired += 1
                log.info("schedule fired", extra={"schedule": name, "tick": tick_ms, "task": task_id})
        next_ms = await self.schedules.next_due_ms()
        if next_ms is None:
            self.interval_s = self.max_wait_s
        else:
            now_ms = await self._server_ms()
            self.interval_s = min(self.max_wait_s, max(0.001, (next_ms - now_ms) / 1000))

    async def _server_ms(self) -> int:
        seconds, micros = await self.schedules.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000
