"""Learning of cancel requests for this worker's running tasks: a poll every ``POLL_S``.

cancel.lua appends each request for a running task to its partition's cancels stream (``id``, the
entry it runs on ``msg``, ``type``; capped). While the worker runs jobs, this loop reads what each
partition it runs jobs of got since its last read (one XRANGE per such partition, pipelined) and hands
the requests for its own runs (same task and same entry) to :meth:`Consumer.cancel`. Nothing is read
on a job's own path, and an idle worker reads nothing. A request for a run on another worker, or an
older run of the same task, matches nothing here."""

from __future__ import annotations

import logging
from typing import Any

from streamq.services.worker.consumer import Consumer
from streamq.shared.keys import KeySchema
from streamq.shared.loops import PeriodicLoop

log = logging.getLogger("streamq.worker")
POLL_S = 0.5  # a running task hears of its cancel within this (and a round trip)
READ_AT_MOST = 1000  # entries read per partition and poll (the stream is capped at about as many)


class Canceller(PeriodicLoop):
    name = "cancels"

    def __init__(self, consumer: Consumer, interval_s: float = POLL_S) -> None:
        super().__init__(interval_s)
        self.consumer = consumer
        self.after: dict[KeySchema, str] = {}  # partition -> the last request read there

    async def tick(self) -> None:
        runs: dict[KeySchema, dict[tuple[str, str], str]] = {}  # partition -> (task, entry) -> ref
        for ref, d in list(self.consumer.in_flight.items()):
            runs.setdefault(self.consumer.of(d), {})[(d.task_id, d.msg_id)] = ref
        if not runs:
            return
        pipe = self.consumer.redis.pipeline(transaction=False)
        for part in runs:
            after = self.after.get(part)
            pipe.xrange(part.cancels, min=f"({after}" if after else "-", max="+", count=READ_AT_MOST)
        replies: list[Any] = await pipe.execute()
        for (part, mine), entries in zip(runs.items(), replies, strict=True):
            for entry_id, fields in entries:
                self.after[part] = entry_id
                run = mine.get((fields.get("id", ""), fields.get("msg", "")))
                if run is not None:
                    self.consumer.cancel(run, fields.get("type", ""))
