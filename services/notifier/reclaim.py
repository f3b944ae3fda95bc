"""Taking over events another notifier read and never acknowledged (it died): XAUTOCLAIM with the
full cursor loop. Entries trimmed from the capped stream while pending come back as deleted ids
(Redis >= 7 removes them from the pending list); they are counted and logged, their payload is gone.
Each sweep covers the events stream of every lane (partition), one XAUTOCLAIM loop per stream."""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.asyncio import Redis

from streamq.services.notifier.events import EventHandler
from streamq.shared.keys import NOTIFIER_GROUP
from streamq.shared.loops import PeriodicLoop

log = logging.getLogger("streamq.notifier")


class Reclaimer(PeriodicLoop):
    name = "notifier-reclaim"

    def __init__(
        self,
        redis: Redis,
        handlers: Callable[[], list[EventHandler]],
        *,
        consumer: str,
        min_idle_s: float,
    ) -> None:
        super().__init__(max(min_idle_s / 2, 0.1))
        self.redis = redis
        self.handlers = handlers  # one per lane; each knows its partition's keys
        self.deleted: dict[str, int] = {}  # per events stream: pending entries trimmed before handling
        self.consumer = consumer
        self.min_idle_ms = int(min_idle_s * 1000)

    async def tick(self) -> None:
        await self.sweep()

    @property
    def deleted_total(self) -> int:
        return sum(self.deleted.values())

    async def sweep(self) -> int:
        """One full pass over every lane's pending list; returns how many entries were taken over."""
        taken = 0
        for handler in self.handlers():
            taken += await self.sweep_one(handler)
        return taken

    async def sweep_one(self, handler: EventHandler) -> int:
        """One full pass over one events stream's pending list (its own XAUTOCLAIM cursor loop)."""
        stream = handler.keys.events
        cursor = "0-0"
        taken = 0
        while True:
            reply = await self.redis.xautoclaim(
                stream, NOTIFIER_GROUP, self.consumer, self.min_idle_ms, start_id=cursor, count=100
            )
            cursor, entries = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                self.deleted[stream] = self.deleted.get(stream, 0) + len(deleted)
                log.warning(
                    "pending events were trimmed before they were handled",
                    extra={"stream": stream, "entries": list(deleted)[:20], "count": len(deleted)},
                )
            if entries:
                taken += len(entries)
                await handler.handle(entries)
            if cursor in ("0-0", b"0-0"):
                return taken
