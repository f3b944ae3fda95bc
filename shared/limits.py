"""Groups and per-type limits (docs/groups-and-limits.md): the api's models and the store behind
``/api/queues/{queue}/groups`` and ``/api/queues/{queue}/types``.

A limit is kept in every partition of its queue (``limits:groups`` / ``limits:types`` hashes, as
``"concurrency|limit|per_ms"``), so the scripts of each partition read it in their own slot; it is
written by limits_set.lua, which also serves the groups the change may free. A group's state lives in
the partition of its name (:func:`streamq.shared.queues.placement_key`).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.models import ms_to_dt
from streamq.shared.queues import QueueRegistry, partition_of, placement_key
from streamq.shared.scripts import Scripts

DEFAULT = "*"  # the limits:groups field of the queue's default for every group
MAX_CONCURRENCY = 1_000_000
MAX_RATE = 100_000  # a window keeps one entry per start it counts
MAX_PER_S = 24 * 3600


class Rate(BaseModel):
    """At most ``limit`` starts in any ``per_s`` seconds (a sliding window)."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(ge=1, le=MAX_RATE, strict=True)
    per_s: float = Field(gt=0, le=MAX_PER_S)


class Limits(BaseModel):
    """A group's or a type's limits; a part left out (or null) is not limited (for a group: the
    queue's default for that part applies)."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY, strict=True)
    rate: Rate | None = None


class GroupPublic(BaseModel):
    group: str
    pending: int  # tasks waiting on the group's limits or their turn
    running: int  # released onto a stream and not ended (started, or about to be)
    concurrency: int | None  # in effect: the group's own or the queue's default
    rate: Rate | None
    held_back: bool  # it has waiting tasks and a limit stops it now
    next_start_at: datetime | None  # when its rate lets the next one start (held by a rate only)


class GroupsPage(BaseModel):
    queue: str
    default: Limits  # the queue's default for every group
    groups: list[GroupPublic]  # top groups by pending, then groups with limits of their own


class TypeLimitPublic(BaseModel):
    type: str
    concurrency: int | None
    rate: Rate | None
    running: int


def spec(limits: Limits) -> str:
    """``limits`` as stored: ``"concurrency|limit|per_ms"``, a part not set left empty."""
    rate = limits.rate
    per_ms = "" if rate is None else format(rate.per_s * 1000, ".6g")
    return f"{limits.concurrency or ''}|{'' if rate is None else rate.limit}|{per_ms}"


def parse_spec(raw: str | None) -> Limits:
    """A stored spec as :class:`Limits` (an unreadable one: no limits)."""
    parts = (raw or "").split("|")
    if len(parts) != 3:
        return Limits()
    try:
        concurrency = int(parts[0]) if parts[0] else None
        rate = Rate(limit=int(parts[1]), per_s=float(parts[2]) / 1000) if parts[1] and parts[2] else None
    except ValueError:
        return Limits()
    return Limits(concurrency=concurrency, rate=rate)


def effective(own: Limits, default: Limits) -> Limits:
    """A group's limits in effect: each part its own, else the default's."""
    return Limits(
        concurrency=own.concurrency if own.concurrency is not None else default.concurrency,
        rate=own.rate if own.rate is not None else default.rate,
    )


class LimitStore:
    """Reads and writes the limits of every queue (kept in each partition of the queue)."""

    def __init__(self, redis: Redis, keys: KeySchema, registry: QueueRegistry, scripts: Scripts, events_maxlen: int):
        self.redis = redis
        self.keys = keys
        self.registry = registry
        self.scripts = scripts
        self.events_maxlen = events_maxlen

    async def _parts(self, queue: str) -> list[KeySchema]:
        config = await self.registry.get(queue) or await self.registry.ensure(queue)
        return self.registry.partition_keys(config)

    async def _write(self, queue: str, kind: str, name: str, value: str) -> None:
        """limits_set.lua in every partition (one pipelined round trip)."""
        parts = await self._parts(queue)
        calls = [("limits_set", part.common(), [self.events_maxlen, kind, name, value]) for part in parts]
        for reply in await self.scripts.call_many(calls):
            if isinstance(reply, BaseException):
                raise reply

    async def set_group(self, queue: str, group: str, limits: Limits) -> None:
        await self._write(queue, "group", group, spec(limits))

    async def delete_group(self, queue: str, group: str) -> bool:
        """Remove a group's own limits (its tasks then follow the default); False when it had none."""
        parts = await self._parts(queue)
        had = bool(await self.redis.hexists(parts[0].limits_groups, group))
        await self._write(queue, "group", group, "")
        return had

    async def default(self, queue: str) -> Limits:
        parts = await self._parts(queue)
        return parse_spec(await self.redis.hget(parts[0].limits_groups, DEFAULT))

    async def set_default(self, queue: str, limits: Limits) -> None:
        empty = limits.concurrency is None and limits.rate is None
        await self._write(queue, "group", DEFAULT, "" if empty else spec(limits))

    async def set_type(self, queue: str, task_type: str, limits: Limits) -> None:
        await self.registry.set_limited(queue, task_type, True)  # its ungrouped tasks: one partition
        await self._write(queue, "type", task_type, spec(limits))

    async def delete_type(self, queue: str, task_type: str) -> bool:
        parts = await self._parts(queue)
        had = bool(await self.redis.hexists(parts[0].limits_types, task_type))
        await self._write(queue, "type", task_type, "")
        await self.registry.set_limited(queue, task_type, False)
        return had

    async def types(self, queue: str) -> list[TypeLimitPublic]:
        """Every type with a limit in ``queue``, by name, with its running count over the partitions."""
        parts = await self._parts(queue)
        raw: dict[str, str] = await self.redis.hgetall(parts[0].limits_types)
        names = sorted(raw)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            for part in parts:
                pipe.scard(part.type_running(name))
        counts: list[int] = await pipe.execute() if names else []
        out = []
        for i, name in enumerate(names):
            limits = parse_spec(raw[name])
            running = sum(counts[i * len(parts) : (i + 1) * len(parts)])
            out.append(TypeLimitPublic(type=name, concurrency=limits.concurrency, rate=limits.rate, running=running))
        return out

    async def groups(self, queue: str, top: int) -> GroupsPage:
        """The ``top`` groups by pending tasks (over every partition), then groups with limits of their
        own (up to ``top`` in all), each with its counts, limits in effect and hold."""
        parts = await self._parts(queue)
        pipe = self.redis.pipeline(transaction=False)
        for part in parts:
            pipe.hgetall(part.groups_backlog)  # one field per group with waiting tasks
        pipe.hgetall(parts[0].limits_groups)
        replies: list[Any] = await pipe.execute()
        overrides: dict[str, str] = replies[-1]
        backlog: dict[str, int] = {}
        for rows in replies[:-1]:
            for name, count in rows.items():
                if name:  # '' holds ungrouped tasks of limited types (GET .../types)
                    backlog[name] = backlog.get(name, 0) + int(count)
        names = sorted(backlog, key=lambda n: (-backlog[n], n))[:top]
        names += sorted(n for n in overrides if n != DEFAULT and n not in backlog)[: max(0, top - len(names))]
        default = parse_spec(overrides.get(DEFAULT))
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            part = parts[partition_of(placement_key(name, None, ""), len(parts))]
            pipe.scard(part.group_running(name))
            pipe.zscore(part.groups_wake, name)
            pipe.hget(part.groups_backlog, name)
        found: list[Any] = await pipe.execute() if names else []
        now_ms = time.time() * 1000
        rows = []
        for i, name in enumerate(names):
            running, wake, pending = int(found[3 * i]), found[3 * i + 1], int(found[3 * i + 2] or 0)
            limits = effective(parse_spec(overrides.get(name)), default)
            full = limits.concurrency is not None and running >= limits.concurrency
            rated = wake is not None and wake > now_ms and not full
            rows.append(
                GroupPublic(
                    group=name,
                    pending=max(pending, backlog.get(name, 0)),
                    running=running,
                    concurrency=limits.concurrency,
                    rate=limits.rate,
                    held_back=pending > 0 and (full or rated),
                    next_start_at=ms_to_dt(str(int(wake))) if rated else None,
                )
            )
        return GroupsPage(queue=queue, default=default, groups=rows)

    async def copy_to(self, source: KeySchema, targets: list[KeySchema]) -> None:
        """Give new partitions the limits the queue's first one has (a queue that grew)."""
        groups, types = await self.redis.hgetall(source.limits_groups), await self.redis.hgetall(source.limits_types)
        if not (groups or types) or not targets:
            return
        pipe = self.redis.pipeline(transaction=False)
        for part in targets:
            if groups:
                pipe.hset(part.limits_groups, mapping=groups)
            if types:
                pipe.hset(part.limits_types, mapping=types)
        await pipe.execute()
