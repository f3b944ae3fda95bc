"""Renewing this worker's lease on its running entries every ``STREAMQ_LEASE_S / 3``.

renew.lua resets each entry's idle time (XCLAIM ... JUSTID, which does not count a delivery) only
while the entry is still pending for this worker, so a task another worker reclaimed (this one
froze for longer than the lease) is never taken back; its late outcome is refused by finish.lua.
"""

from __future__ import annotations

import logging

from services.worker.consumer import Consumer
from shared.keys import WORKER_GROUP
from shared.loops import PeriodicLoop

log = logging.getLogger("streamq.worker")


class Lease(PeriodicLoop):
    name = "lease"

    def __init__(self, consumer: Consumer, *, lease_s: float) -> None:
        super().__init__(lease_s / 3)
        self.consumer = consumer
        self._common = consumer.keys.common()
        self.lost = 0

    async def tick(self) -> None:
        held = list(self.consumer.in_flight.values())
        if not held:
            return
        args: list[object] = [self.consumer.events_maxlen, WORKER_GROUP, self.consumer.consumer]
        for d in held:
            args += [d.priority, d.msg_id]
        reply = await self.consumer.scripts.call("renew", self._common, args)
        for delivery, renewed in zip(held, reply, strict=True):
            if int(renewed) == 1:
                continue
            self.consumer.in_flight.pop(delivery.msg_id, None)  # stop renewing it
            if int(renewed) == 0:
                self.lost += 1
                log.warning("lease lost: another worker took the task over", extra={"task": delivery.task_id})
