"""Persistent blocking readers, one per consumed partition, used while nothing waits anywhere.

While the consumer is idle (its last round found nothing), each watcher blocks in XREADGROUP on its
own partition's five priority streams (one hash slot, so it also runs on Redis Cluster), ``block_ms``
at a time, over a client for blocking reads only: one connection per partition, never one of the
capped pool the worker's other loops (heartbeat, registration, lease renewal, reclaim) depend on.
The read (COUNT 1: a wake-up that also delivers) is made as the worker's staging consumer
(:func:`~streamq.services.worker.intake.staging_consumer`), and take.lua follows it on the same
connection, in one pipeline: Redis runs the script as soon as the read returns, so the entry read
(and more, as many as the consumer's ``wake_call`` allows) comes back already started (marked
processing on this worker; cancel, pause and duplicate delivery checked) in the read's own round
trip, and goes straight to the consumer (``woken``), which owns the slots (:class:`SlotOwner`). A
blocked read is never cancelled: on shutdown each watcher finishes its current block (at most
``block_ms``) and whatever it started is run during the drain. A paused partition is not read (its
flag is checked before each block); a read already blocked when the pause came is caught by
take.lua, which puts the entry back instead of starting it. If the script did not run (NOSCRIPT
after a server restart), it is called again on its own; an entry left with the staging consumer is
taken by the next call or reclaimed after the lease.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamq.services.worker.intake import IntakeClock, WakeCall, recover_groups, wait_either
from streamq.services.worker.sources import Sources
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.redisfast import HeldConnection
from streamq.shared.scripts import Scripts

log = logging.getLogger("streamq.worker")


class SlotOwner(Protocol):
    """All a watcher asks of the consumer, which owns the worker's slots."""

    sources: Sources  # the partitions to watch
    block_ms: int  # how long one read blocks
    idle: asyncio.Event  # set while nothing waits anywhere: the watchers block meanwhile
    clock: IntakeClock  # a blocked read is an intake round trip in flight (readiness)

    def wake_call(self, part: KeySchema) -> WakeCall:
        """The next read of ``part`` and the take.lua call behind it (how many it may start)."""

    def woken(self, call: WakeCall, reply: list[Any]) -> int:
        """take.lua's reply behind the read: the jobs it started are the consumer's; how many."""


class Watchers:
    """One watcher task per partition of ``consumer.sources``; new partitions get one in :meth:`sync`."""

    def __init__(
        self, consumer: SlotOwner, redis: Redis, readers: Redis, scripts: Scripts, stop: asyncio.Event
    ) -> None:
        self.consumer = consumer
        self.redis = redis  # the pause flags, the consumer groups
        self.readers = readers  # a client for blocking reads only (make_client(blocking_reads=True))
        self.scripts = scripts
        self.stop = stop
        self.tasks: dict[KeySchema, asyncio.Task[None]] = {}
        self.held: dict[KeySchema, HeldConnection] = {}  # each watcher's own connection (not on a cluster)
        self.received = 0  # entries delivered by blocking reads (for tests and debugging)
        self.started = 0  # of which started (the others were skipped: cancelled, paused, gone)

    def sync(self) -> None:
        for part in self.consumer.sources.all():
            if part not in self.tasks:
                self.tasks[part] = asyncio.get_running_loop().create_task(self.watch(part), name=f"watch-{part.tag}")

    async def join(self) -> None:
        """Wait for every watcher to finish its current block (after ``stop`` is set), then give their
        connections back."""
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for held in self.held.values():
            await held.release()

    async def watch(self, part: KeySchema) -> None:
        consumer = self.consumer
        while not self.stop.is_set():
            self.sync()  # a partition added meanwhile gets its own watcher
            await wait_either(self.stop, consumer.idle)
            if self.stop.is_set():
                return
            try:
                if await self.redis.exists(part.paused):
                    await wait_either(self.stop, asyncio.Event(), within_s=consumer.block_ms / 1000)
                    continue
                await self.read_and_start(part)
            except (RedisError, OSError) as error:
                log.warning("redis unavailable; retrying", extra={"error": str(error)})
                await recover_groups(self.redis, consumer.sources.all(), error)
                await asyncio.sleep(0.5)
            except Exception:  # a watcher never dies silently: logged, and it blocks again
                log.exception("watcher failed; retrying", extra={"partition": part.tag})
                await asyncio.sleep(0.5)

    async def read_and_start(self, part: KeySchema) -> None:
        """One blocking read and take.lua in one write; the started jobs go to the consumer."""
        consumer = self.consumer
        call = consumer.wake_call(part)
        ticket = consumer.clock.begin()
        try:
            read, reply = await self._read_then_take(call)
        finally:
            consumer.clock.end(ticket)
        if isinstance(read, BaseException):
            raise read
        reply = await self.scripts.unless_unknown(reply, "take", call.keys, call.args)  # the server lost its scripts
        if isinstance(reply, BaseException):
            raise reply
        self.received += _entries_read(read)
        started = consumer.woken(call, reply)
        if started:
            self.started += started
            await asyncio.sleep(0)  # the jobs reach their handlers before this watcher sets up its next wait

    async def _read_then_take(self, call: WakeCall) -> list[Any]:
        """The blocking read as the staging consumer and take.lua right behind it, in one write: both
        replies (or errors). Over the watcher's own connection (:class:`HeldConnection`), or on a
        cluster over a pipeline to the partition's node."""
        part = call.part
        streams = part.streams()
        held = self.held.get(part)
        if held is None and HeldConnection.usable(self.readers):
            held = self.held[part] = HeldConnection(self.readers)
        if held is None:
            pipe = self.readers.pipeline(transaction=False)
            pipe.xreadgroup(WORKER_GROUP, call.staging, {s: ">" for s in streams}, count=1, block=call.block_ms)
            self.scripts.queue_call(pipe, "take", call.keys, call.args)
            return await pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]
        read = ("XREADGROUP", "GROUP", WORKER_GROUP, call.staging, "COUNT", 1, "BLOCK", call.block_ms, "STREAMS",
                *streams, *([">"] * len(streams)))  # fmt: skip
        take = self.scripts.call_command("take", call.keys, call.args)
        try:
            return await held.exchange(read, take)
        except (RedisConnectionError, RedisTimeoutError):
            # once more at once on a fresh connection (the held one went stale: a restart, a failover),
            # as redis-py's own retry would: an entry the lost read delivered is taken by this take.lua
            # (pending for the staging consumer); one the lost take.lua started is reclaimed after its lease
            return await held.exchange(read, take)


def _entries_read(read: Any) -> int:
    """How many entries an XREADGROUP reply holds: RESP3 ``{stream: entries}`` (read off a connection),
    RESP2 or redis-py's parsed ``[[stream, entries], ...]`` (a pipeline), or none (the block ran out)."""
    if not read:
        return 0
    per_stream = read.values() if isinstance(read, dict) else (entries for _stream, entries in read)
    return sum(len(entries) for entries in per_stream)
