"""The pieces of reading work that hold no slot: take.lua's call, its reply as jobs, start.lua for
entries read otherwise, a watcher's read, the ages of intake round trips in flight, and recreating
lost consumer groups. The consumer
(:class:`~streamq.services.worker.consumer.Consumer`) decides when they run and for how many slots."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamq.services.worker.jobs import Delivery, Job
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.scripts import Scripts
from streamq.shared.streams import ensure_group

log = logging.getLogger("streamq.worker")
STAGED_SUFFIX = "~staged"


def staging_consumer(worker: str) -> str:
    """The consumer name a worker's blocking reads deliver to (until take.lua moves the entries to the
    worker's own consumer)."""
    return worker + STAGED_SUFFIX


def staging_owner(consumer: str) -> str | None:
    """The worker whose staging consumer this is (None for a worker's own consumer)."""
    return consumer.removesuffix(STAGED_SUFFIX) if consumer.endswith(STAGED_SUFFIX) else None


def take_call(
    part: KeySchema, count: int, *, consumer: str, events_maxlen: int, staging: str = ""
) -> tuple[list[str], list[Any]]:
    """take.lua's KEYS and ARGV: read up to ``count`` entries of one partition and start them on
    ``consumer`` (first those pending for ``staging``, a watcher's consumer)."""
    keys = [*part.common(), part.paused]
    return keys, [events_maxlen, WORKER_GROUP, consumer, part.task(""), count, staging]


def jobs_of(part: KeySchema, reply: list[Any]) -> list[Job]:
    """The started jobs of a take.lua reply."""
    return [Job.from_reply(Delivery(int(row[1]), row[0], row[2], part), row[2:]) for row in reply]


async def start_jobs(
    scripts: Scripts, deliveries: list[Delivery], *, default: KeySchema, consumer: str, events_maxlen: int
) -> list[Job]:
    """start.lua for each partition's deliveries (``default``: the partition of those without keys), all
    in one round trip, started on ``consumer``; the jobs started, in delivery order."""
    groups: dict[KeySchema, list[Delivery]] = {}
    for d in deliveries:
        groups.setdefault(d.keys or default, []).append(d)
    calls: list[tuple[str, list[str], list[Any]]] = []
    for part, members in groups.items():
        keys = [*part.common(), *(part.task(d.task_id) for d in members), part.paused]
        args: list[Any] = [events_maxlen, WORKER_GROUP, consumer]
        for d in members:
            args += [d.msg_id, d.task_id, d.priority]
        calls.append(("start", keys, args))
    if len(calls) == 1:
        replies = [await scripts.call(*calls[0])]
    else:
        replies = await scripts.call_many(calls)
    started: dict[str, Job] = {}
    for members, reply in zip(groups.values(), replies, strict=True):
        if isinstance(reply, BaseException):
            raise reply
        for d, r in zip(members, reply, strict=True):
            if r:
                started[d.ref] = Job.from_reply(d, r)
    return [started[d.ref] for d in deliveries if d.ref in started]


@dataclass(frozen=True, slots=True)
class WakeCall:
    """A watcher's blocked read of one partition (as ``staging``, at most ``block_ms``) and the take.lua
    call sent right behind it, which starts up to ``count`` entries."""

    part: KeySchema
    staging: str
    block_ms: int
    count: int
    keys: list[str]
    args: list[Any]


class IntakeClock:
    """When each intake round trip in flight (a take, a watcher's read) started: what readiness reads."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}  # ticket -> time.monotonic()
        self._ticket = 0

    def begin(self) -> int:
        """Note a round trip starting; :meth:`end` with the ticket returned notes its end."""
        self._ticket += 1
        self.started[self._ticket] = time.monotonic()
        return self._ticket

    def end(self, ticket: int) -> None:
        del self.started[ticket]

    def age(self) -> float:
        """How long the oldest round trip in flight has waited (0 with none), read from the health
        server's thread (list() copies the values in one step under the GIL)."""
        started = list(self.started.values())
        return time.monotonic() - min(started) if started else 0.0


async def wait_either(stop: asyncio.Event, event: asyncio.Event, within_s: float | None = None) -> None:
    """Until ``stop`` or ``event`` is set (or ``within_s`` seconds pass)."""
    stopper = asyncio.ensure_future(stop.wait())
    other = asyncio.ensure_future(event.wait())
    await asyncio.wait({stopper, other}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    other.cancel()


async def recover_groups(redis: Redis, parts: list[KeySchema], error: BaseException) -> None:
    """After ``NOGROUP`` (the server lost the consumer group: a failover inside the asynchronous
    replication window, a server restarted empty), the groups of every consumed partition are
    created again from id 0, so what waits in the streams is delivered instead of stuck."""
    if "NOGROUP" not in str(error):
        return
    try:
        for part in parts:
            await ensure_group(redis, part.streams(), WORKER_GROUP)
        log.warning("consumer groups were missing; created again", extra={"error": str(error)})
    except (RedisError, OSError) as again:
        log.warning("redis unavailable; retrying", extra={"error": str(again)})
