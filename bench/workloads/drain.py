"""drain: N noop tasks already queued, worker processes started, until every task is completed.

The time is taken from Redis's own stamps on the tasks: the first ``started_at`` to the last
``completed_at`` (ms), so process start-up is not counted but every task's full life is."""

from __future__ import annotations

from bench.env import redis_cpu_seconds
from bench.workloads.base import Context, Figures, enqueue, task_fields, wait_completed


async def run(ctx: Context, concurrency: int) -> Figures:
    cfg = ctx.config
    stack = ctx.stack()
    queue = ctx.queue(stack.keys)
    try:
        ids = await enqueue(queue, cfg.drain_n)
        redis_cpu = await redis_cpu_seconds(ctx.redis)
        workers = await stack.workers(ctx.redis, cfg.workers, concurrency)
        worker_cpu = sum(w.cpu_seconds() for w in workers)  # start-up (imports) is not counted
        await wait_completed(ctx.redis, stack.keys, cfg.drain_n, *workers, timeout=60 + cfg.drain_n / 200)
        worker_cpu = sum(w.cpu_seconds() for w in workers) - worker_cpu
        redis_cpu = await redis_cpu_seconds(ctx.redis) - redis_cpu
    finally:
        stack.stop()
    stamps = await task_fields(ctx.redis, stack.keys, ids, "started_at", "completed_at")
    first = min(int(s[0] or 0) for s in stamps)
    last = max(int(s[1] or 0) for s in stamps)
    seconds = max(last - first, 1) / 1000
    per_1k = 1000 / cfg.drain_n
    return {
        "tasks_per_s": cfg.drain_n / seconds,
        "concurrency": float(concurrency),
        "worker_cpu_ms_per_1k": worker_cpu * 1000 * per_1k,
        "redis_cpu_ms_per_1k": redis_cpu * 1000 * per_1k,
    }
