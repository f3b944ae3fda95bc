"""The memory guard (docs/api.md: Memory guard): new tasks are refused while Redis's used memory is above
``STREAMQ_MEMORY_GUARD_RATIO`` of its ``maxmemory``, before Redis itself refuses writes (when the
workers could no longer record outcomes, which is what frees memory).

A background loop samples ``INFO memory`` about once a second (on a cluster, every master: the
fullest counts) and keeps the ratio; a submit only reads the cached flag (no Redis round trip). The
refusal is a :class:`streamq.shared.refusals.MemoryGuarded`, answered 503 with ``Retry-After`` like Redis's own
refusals; it ends by itself at the first sample below the threshold. Reads and the workers are never
affected. Exported as ``streamq_redis_memory_ratio`` (0 while Redis has no ``maxmemory``).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from streamq.shared.loops import PeriodicLoop
from streamq.shared.metrics import REDIS_MEMORY_RATIO
from streamq.shared.refusals import MemoryGuarded


def memory_ratio(info: dict[str, Any]) -> float:
    """used_memory / maxmemory of one node's ``INFO memory``; 0 without a maxmemory."""
    limit = int(info.get("maxmemory", 0) or 0)
    return int(info.get("used_memory", 0) or 0) / limit if limit else 0.0


class MemoryGuard(PeriodicLoop):
    name = "memory-guard"

    def __init__(self, redis: Redis | RedisCluster, threshold: float, interval_s: float = 1.0) -> None:
        super().__init__(interval_s)
        self.redis = redis
        self.threshold = threshold  # 0: never refuse (the ratio is still sampled)
        self.ratio = 0.0

    @property
    def tripped(self) -> bool:
        return 0 < self.threshold <= self.ratio

    def check(self) -> None:
        """Raise :class:`MemoryGuarded` while the last sample is above the threshold (a submit's check)."""
        if self.tripped:
            raise MemoryGuarded(self.ratio, self.threshold)

    async def tick(self) -> None:
        self.ratio = await self.sample()
        REDIS_MEMORY_RATIO.set(self.ratio)

    async def sample(self) -> float:
        if isinstance(self.redis, RedisCluster):
            replies = await self.redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
            return max((memory_ratio(info) for info in replies.values()), default=0.0)
        return memory_ratio(await self.redis.info("memory"))
