"""Named queues: their configs (partitions, paused, retention), the workers' weights, and partition choice.

A queue is created on first use (a task names it) with one partition; ``configure`` grows it (never
shrinks: a partition that once held tasks keeps being read). Configs live in one global hash
(``KeySchema.queues``); each partition's pause flag lives inside the partition's own hash slot so
``take.lua`` checks it atomically with the read.
"""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass, replace
from typing import Any

import orjson
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_PARTITIONS = 64
DEFAULT_QUEUE = "default"


RETAINED = ("completed", "failed", "cancelled", "dead_letter")  # what a queue's retention bounds


@dataclass(frozen=True, slots=True)
class Bound:
    """How much of one kind of finished record a queue keeps: the newest ``count`` (None: no count
    bound), each at most ``age_s`` seconds after it finished (None: until ``STREAMQ_RESULT_TTL_S``)."""

    age_s: int | None
    count: int | None

    def to_dict(self) -> dict[str, int | None]:
        return {"age_s": self.age_s, "count": self.count}


Retention = dict[str, Bound]  # kind (RETAINED) -> its bound


def retention_from(data: dict[str, Any], base: Retention) -> Retention:
    """``base`` with the bounds named in ``data`` ({kind: {"age_s": .., "count": ..}}, each part
    optional) put over it."""
    out = dict(base)
    for kind, bound in data.items():
        if kind in RETAINED and isinstance(bound, dict):
            old = out.get(kind, Bound(None, None))
            out[kind] = Bound(bound.get("age_s", old.age_s), bound.get("count", old.count))
    return out


def retention_json(retention: Retention) -> dict[str, dict[str, int | None]]:
    return {kind: retention[kind].to_dict() for kind in RETAINED if kind in retention}


@dataclass(frozen=True, slots=True)
class QueueConfig:
    name: str
    partitions: int = 1
    paused: bool = False
    # the bounds set on this queue (over the settings' defaults); None: not settled yet (a queue stored
    # before retention existed: the janitor settles it, see streamq.shared.retention.settle)
    retention: Retention | None = None
    # task types with a limit (docs/groups-and-limits.md): their ungrouped tasks share one partition
    limited_types: frozenset[str] = frozenset()

    def to_json(self) -> str:
        data: dict[str, Any] = {"partitions": self.partitions, "paused": self.paused}
        if self.retention is not None:
            data["retention"] = retention_json(self.retention)
        if self.limited_types:
            data["limited_types"] = sorted(self.limited_types)
        return orjson.dumps(data).decode()

    @classmethod
    def from_json(cls, name: str, raw: str | None) -> QueueConfig:
        data = orjson.loads(raw) if raw else {}
        kept = data.get("retention")
        retention = retention_from(kept, {}) if isinstance(kept, dict) else None
        limited = data.get("limited_types")
        types = frozenset(str(t) for t in limited) if isinstance(limited, list) else frozenset()
        return cls(name, int(data.get("partitions", 1)), bool(data.get("paused", False)), retention, types)


def parse_weights(value: str) -> dict[str, int]:
    """``"critical:6,default:3,bulk"`` -> ``{"critical": 6, "default": 3, "bulk": 1}`` (order kept).

    Raises ValueError naming the bad part: a name outside ``[A-Za-z0-9_.-]{1,64}``, a weight that is not an
    integer from 1 to 1000, a queue named twice, or an empty list."""
    weights: dict[str, int] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        if not QUEUE_NAME.match(name):
            raise ValueError(f"queue name {name!r} must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if name in weights:
            raise ValueError(f"queue {name!r} is named twice")
        if weight and not (weight.isdigit() and 1 <= int(weight) <= 1000):
            raise ValueError(f"weight of queue {name!r} must be an integer from 1 to 1000 (got {weight!r})")
        weights[name] = int(weight) if weight else 1
    if not weights:
        raise ValueError("name at least one queue")
    return weights


def partition_of(key: str, partitions: int) -> int:
    """The partition a task goes to: a stable hash of its idempotency key (so duplicates meet in one
    slot) or of its id (so tasks spread evenly)."""
    if partitions <= 1:
        return 0
    return zlib.crc32(key.encode()) % partitions


def placement_key(group: str | None, own_key: str | None, task_id: str, limited_type: str | None = None) -> str:
    """What a task's partition is the hash of (:func:`partition_of`): its group's name, so every task of
    a group and the group's state share one slot (docs/groups-and-limits.md); else its own key (unique,
    debounce or idempotency key: ``streamq.shared.broker.own_key``), so a key always meets its earlier
    task, whatever limits were set meanwhile; else, for a task of a type with a limit, the type's name,
    so the type's count is in one slot; else its id, so tasks spread evenly."""
    if group is not None:
        return "group:" + group
    if own_key is not None:
        return own_key
    if limited_type is not None:
        return "type:" + limited_type
    return task_id


class QueueRegistry:
    """Known queues and their configs, read from Redis at most once per ``cache_s``."""

    def __init__(self, redis: Redis, keys: KeySchema, *, cache_s: float = 1.0) -> None:
        self.redis = redis
        self.keys = keys
        self.cache_s = cache_s
        self._cache: dict[str, QueueConfig] = {}
        self._read_at = float("-inf")

    async def all(self, *, fresh: bool = False) -> dict[str, QueueConfig]:
        """Every known queue by name (sorted), the default queue always included."""
        if fresh or time.monotonic() - self._read_at > self.cache_s:
            raw: dict[str, str] = await self.redis.hgetall(self.keys.queues)
            configs = {name: QueueConfig.from_json(name, value) for name, value in raw.items()}
            configs.setdefault(DEFAULT_QUEUE, QueueConfig(DEFAULT_QUEUE))
            self._cache = dict(sorted(configs.items()))
            self._read_at = time.monotonic()
        return self._cache

    def cached(self) -> dict[str, QueueConfig] | None:
        """What :meth:`all` answers without reading Redis: the configs while the cache is fresh, else None
        (the blocking client's caller thread places tasks from it, streamq/direct.py)."""
        if time.monotonic() - self._read_at > self.cache_s:
            return None
        return self._cache

    async def get(self, name: str) -> QueueConfig | None:
        known = await self.all()
        if name not in known:
            known = await self.all(fresh=True)
        return known.get(name)

    async def ensure(self, name: str) -> QueueConfig:
        """The queue's config, creating it (one partition) on first use."""
        config = self._cache.get(name)
        if config is not None:
            return config
        await self.redis.hsetnx(self.keys.queues, name, QueueConfig(name).to_json())
        return await self.get(name) or QueueConfig(name)

    async def configure(self, name: str, partitions: int) -> QueueConfig:
        """Set a queue's partition count; it can grow, never shrink (raises ValueError)."""
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise ValueError(f"partitions must be from 1 to {MAX_PARTITIONS}")
        current = await self._current(name)
        if partitions < current.partitions:
            raise ValueError(f"partitions can only grow (queue {name!r} has {current.partitions})")
        config = replace(current, partitions=partitions)
        await self._write(config)
        return config

    async def set_retention(self, name: str, retention: Retention) -> QueueConfig:
        """Put ``retention``'s bounds over the queue's own (the kinds and measures it names)."""
        current = await self._current(name)
        config = replace(current, retention={**(current.retention or {}), **retention})
        await self._write(config)
        return config

    async def set_limited(self, name: str, task_type: str, limited: bool) -> QueueConfig:
        """Add or remove a task type from the queue's limited types."""
        current = await self._current(name)
        types = current.limited_types | {task_type} if limited else current.limited_types - {task_type}
        config = replace(current, limited_types=types)
        await self._write(config)
        return config

    async def set_paused(self, name: str, paused: bool) -> QueueConfig:
        """Pause or resume: the config and every partition's flag, in one round trip."""
        current = await self._current(name)
        config = replace(current, paused=paused)
        await self._write(config)
        return config

    async def _current(self, name: str) -> QueueConfig:
        """The config as stored now (not the cache: another process may have paused or grown it)."""
        found = (await self.all(fresh=True)).get(name)
        return found if found is not None else await self.ensure(name)

    async def _write(self, config: QueueConfig) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.keys.queues, config.name, config.to_json())
        for part in self.partition_keys(config):  # flags first in the slot they guard, read by take.lua
            if config.paused:
                pipe.set(part.paused, "1")
            else:
                pipe.delete(part.paused)
        await pipe.execute()
        self._cache[config.name] = config

    def partition_keys(self, config: QueueConfig) -> list[KeySchema]:
        return self.keys.for_queue(config.name).partitions(config.partitions)

    async def all_partitions(self, *also: str) -> list[KeySchema]:
        """Keys of every partition of every known queue (cached like :meth:`all`), plus partition 0 of
        each queue in ``also`` not registered yet (a service's own default queue): what the background
        services fan out over."""
        configs = dict(await self.all())
        for name in also:
            configs.setdefault(name, QueueConfig(name))
        return [part for name in sorted(configs) for part in self.partition_keys(configs[name])]
