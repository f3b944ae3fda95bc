"""memory: Redis bytes per finished task kept, and whether memory returns to its baseline once the
result TTL has passed and the workers' janitor has deleted the tasks.

Kept bytes = ``used_memory`` after every task completed minus before any was submitted, divided
by the tasks still held (the queue's stats total; the TTL is set longer than the submit and drain, so
normally all of them). The events stream is capped (``STREAMQ_EVENTS_MAXLEN``) and
stays after the tasks go, by design; it is reported on its own."""

from __future__ import annotations

from bench.env import until
from bench.workloads.base import Context, Figures, enqueue, wait_completed

BASELINE_SLACK_BYTES = 256 * 1024  # allocator and dict-resize noise


async def _used(ctx: Context) -> int:
    return int((await ctx.redis.info("memory"))["used_memory"])


async def run(ctx: Context) -> Figures:
    cfg = ctx.config
    stack = ctx.stack()
    keys = stack.keys
    queue = ctx.queue(keys)
    try:
        workers = await stack.workers(
            ctx.redis, cfg.workers, cfg.tuned_concurrency, STREAMQ_RESULT_TTL_S=str(cfg.memory_ttl_s)
        )
        await enqueue(queue, 1)  # create the streams, indexes and counters first
        await wait_completed(ctx.redis, keys, 1, *workers, timeout=30)
        baseline = await _used(ctx)
        await enqueue(queue, cfg.memory_n)
        await wait_completed(ctx.redis, keys, cfg.memory_n + 1, *workers, timeout=120 + cfg.memory_n / 200)
        peak = await _used(ctx)
        kept = (await queue.stats()).total
        events_peak = int(await ctx.redis.memory_usage(keys.events, samples=0) or 0)

        async def expired() -> bool:
            return (await queue.stats()).total == 0

        await until(expired, *workers, what="finished tasks expired", timeout=cfg.memory_ttl_s + 120, every=0.5)
        after = await _used(ctx)
        events_after = int(await ctx.redis.memory_usage(keys.events, samples=0) or 0)
    finally:
        stack.stop()
    residual = after - baseline
    return {
        "tasks_kept": float(kept),
        "bytes_per_task": (peak - baseline) / max(kept, 1),
        "of_which_events_bytes": events_peak / max(kept, 1),
        "residual_after_ttl_bytes": float(residual),
        "residual_minus_events_bytes": float(residual - events_after),
        "back_to_baseline": "yes" if residual - events_after < BASELINE_SLACK_BYTES else "no",
    }
