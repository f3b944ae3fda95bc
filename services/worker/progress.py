"""Sending the progress handlers report (``ctx.progress(0.4, "resized 4 of 10")``).

A report only replaces the task's previous unsent one in memory (:class:`~streamq.services.worker.control.Control`);
every ``INTERVAL_S`` this loop sends what was reported since, one progress.lua call per partition, all
in one pipelined round trip. So however often a handler reports, at most about ten writes (and
``progress`` events) a second per task reach Redis, and a worker whose handlers report nothing sends
nothing. progress.lua refuses a report for a run this worker no longer holds (its lease lost), as
finish.lua refuses a late outcome. A report still unsent when its run ends here is dropped (the task's
stored progress stays the last one sent)."""

from __future__ import annotations

import logging
from typing import Any

from streamq.services.worker.consumer import Consumer
from streamq.services.worker.control import Report
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.loops import PeriodicLoop

log = logging.getLogger("streamq.worker")
INTERVAL_S = 0.1


class ProgressSender(PeriodicLoop):
    name = "progress"

    def __init__(self, consumer: Consumer, interval_s: float = INTERVAL_S) -> None:
        super().__init__(interval_s)
        self.consumer = consumer
        self.sent = 0
        self.refused = 0

    async def tick(self) -> None:
        held = self.consumer.in_flight
        # a run that ended here meanwhile: its outcome is recorded (or on its way), its report moot
        reports = [r for r in self.consumer.control.take_reports() if r.delivery.ref in held]
        if not reports:
            return
        groups: dict[KeySchema, list[Report]] = {}
        for r in reports:
            groups.setdefault(self.consumer.of(r.delivery), []).append(r)
        calls: list[tuple[str, list[str], list[Any]]] = []
        for part, members in groups.items():
            keys = part.common()
            args: list[Any] = [self.consumer.events_maxlen, WORKER_GROUP, self.consumer.consumer]
            for r in members:
                d = r.delivery
                keys.append(part.task(d.task_id))
                args += [d.task_id, d.msg_id, d.priority, f"{r.fraction:.4g}", r.message]
            calls.append(("progress", keys, args))
        replies = await self.consumer.scripts.call_many(calls)
        for members, reply in zip(groups.values(), replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            for r, status in zip(members, reply, strict=True):
                if status == "ok":
                    self.sent += 1
                else:
                    self.refused += 1
                    log.warning(
                        "progress refused: this worker no longer holds the task",
                        extra={"task": r.delivery.task_id, "status": status},
                    )
