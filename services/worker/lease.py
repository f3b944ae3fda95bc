"""Renewing this worker's lease on its running entries every ``STREAMQ_LEASE_S / 3``.

renew.lua resets each entry's idle time (XCLAIM ... JUSTID, which does not count a delivery) only
while the entry is still pending for this worker, so a task another worker reclaimed (this one
froze for longer than the lease) is never taken back; its late outcome is refused by finish.lua.
Entries of several partitions: one renew.lua call per partition, all in one pipelined round trip.
"""

from __future__ import annotations

import logging
from typing import Any

from streamq.services.worker.consumer import Consumer
from streamq.services.worker.jobs import Delivery
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.loops import PeriodicLoop

log = logging.getLogger("streamq.worker")


class Lease(PeriodicLoop):
    name = "lease"

    def __init__(self, consumer: Consumer, *, lease_s: float) -> None:
        super().__init__(lease_s / 3)
        self.consumer = consumer
        self.lost = 0

    async def tick(self) -> None:
        held = list(self.consumer.in_flight.values())
        if not held:
            return
        groups: dict[KeySchema, list[Delivery]] = {}
        for d in held:
            groups.setdefault(self.consumer.of(d), []).append(d)
        calls: list[tuple[str, list[str], list[Any]]] = []
        for part, members in groups.items():
            args: list[Any] = [self.consumer.events_maxlen, WORKER_GROUP, self.consumer.consumer]
            for d in members:
                args += [d.priority, d.msg_id]
            calls.append(("renew", part.common(), args))
        replies = await self.consumer.scripts.call_many(calls)
        for members, reply in zip(groups.values(), replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            for delivery, renewed in zip(members, reply, strict=True):
                self._check(delivery, int(renewed))

    def _check(self, delivery: Delivery, renewed: int) -> None:
        if renewed == 1:
            return
        self.consumer.in_flight.pop(delivery.ref, None)  # stop renewing it
        if renewed == 0:
            self.lost += 1
            log.warning("lease lost: another worker took the task over", extra={"task": delivery.task_id})
