"""cluster: the drain workload on a private 3-master Redis Cluster (``redis+cluster://``).

For 1, 2 and 3 partitions in turn (or only ``--cluster-partitions N``), on one cluster, each on a fresh key
prefix: N noop tasks queued over that many partitions of the queue (partition k under the hash
tag ``{default:k}``, so partitions land on different masters), 2 worker processes started with the
tuned concurrency, until every task is completed; timed from Redis's stamps like ``drain``. With one
partition every task is in one hash slot, so one master does all the queue's work: the figure to
compare with ``drain-tuned`` (one plain redis-server). More partitions spread the queue over the
masters (the workers read every partition of the queue's registered config)."""

from __future__ import annotations

from redis.asyncio import Redis

from bench.env import Stack, until
from bench.workloads.base import Context, Figures, enqueue, task_fields
from streamq.shared.keys import KeySchema
from streamq.shared.queue import Queue
from streamq.shared.queues import QueueRegistry
from streamq.shared.redis import make_client
from streamq.shared.settings import Settings
from streamq.testing import ClusterServers


async def _completed(redis: Redis, parts: list[KeySchema]) -> int:
    pipe = redis.pipeline(transaction=False)
    for part in parts:
        pipe.hget(part.stats, "completed_total")
    return sum(int(v or 0) for v in await pipe.execute())


async def _drain(ctx: Context, servers: ClusterServers, redis: Redis, partitions: int) -> float:
    cfg = ctx.config
    stack = Stack(servers, ctx.log_dir, ctx.profile_dir)
    parts = stack.keys.partitions(partitions)
    if partitions > 1:  # workers read every partition of the queue's registered config
        await QueueRegistry(redis, stack.keys).configure(stack.keys.queue, partitions)
    try:
        ids = [await enqueue(Queue(redis, part), cfg.drain_n // len(parts)) for part in parts]
        total = sum(len(chunk) for chunk in ids)
        workers = await stack.workers(redis, cfg.workers, cfg.tuned_concurrency)

        async def done() -> bool:
            return await _completed(redis, parts) >= total

        await until(done, *workers, what=f"{total} tasks completed", timeout=60 + total / 100, every=0.05)
    finally:
        stack.stop()
    stamps = [s for part, chunk in zip(parts, ids, strict=True) for s in await task_fields(
        redis, part, chunk, "started_at", "completed_at")]  # fmt: skip
    first = min(int(s[0] or 0) for s in stamps)
    last = max(int(s[1] or 0) for s in stamps)
    return total / (max(last - first, 1) / 1000)


async def run(ctx: Context) -> Figures:
    servers = ClusterServers(3)
    redis = make_client(Settings(redis_url=servers.url, _env_file=None))  # type: ignore[call-arg]
    try:
        counts = [ctx.config.cluster_partitions] if ctx.config.cluster_partitions else [1, 2, 3]
        figures: Figures = {f"p{n}_tasks_per_s": await _drain(ctx, servers, redis, n) for n in counts}
        figures["masters"] = 3.0
        return figures
    finally:
        await redis.aclose()
        servers.stop()
