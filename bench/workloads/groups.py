"""groups: grouped tasks under limits (docs/groups-and-limits.md).

``groups-drain-*``: ``drain_n`` noop tasks spread over ``groups_count`` groups, each limited to
``group_concurrency`` at once, already queued; worker processes started; first ``started_at`` to last
``completed_at`` as in ``drain`` (compare with ``drain-default`` / ``drain-tuned`` of the same run:
``tasks_per_s_of_ungrouped``). ``groups-held``: one group limited to one start per ``held_per_ms``
(a sliding window of one), ``held_n`` tasks queued with the scheduler running; each task's start less
the moment its limit let it start (the previous start + the window): how late a held-back task starts."""

from __future__ import annotations

from itertools import pairwise

from bench.env import has_scheduler, redis_cpu_seconds
from bench.handlers import STAMP
from bench.stats import percentile
from bench.workloads.base import Context, Figures, task_fields, wait_completed
from bench.workloads.trace import handler_time
from streamq.shared.limits import Limits, LimitStore, Rate
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.queues import QueueRegistry

NO_SCHEDULER = "n/a (no scheduler)"


def limit_store(ctx: Context, queue: Queue) -> LimitStore:
    return LimitStore(queue.redis, queue.keys, QueueRegistry(queue.redis, queue.keys), queue.scripts, 100_000)


async def drain(ctx: Context, concurrency: int) -> Figures:
    cfg = ctx.config
    stack = ctx.stack()
    queue = ctx.queue(stack.keys)
    try:
        await limit_store(ctx, queue).set_default("default", Limits(concurrency=cfg.group_concurrency))
        ids: list[str] = []
        for start in range(0, cfg.drain_n, 1_000):
            tasks = [TaskCreate(type="noop", group=f"g{i % cfg.groups_count}") for i in range(start, start + 1_000)]
            ids += [d.task.id for d in await queue.submit(tasks[: cfg.drain_n - start])]
        redis_cpu = await redis_cpu_seconds(ctx.redis)
        workers = await stack.workers(ctx.redis, cfg.workers, concurrency)
        await wait_completed(ctx.redis, stack.keys, cfg.drain_n, *workers, timeout=60 + cfg.drain_n / 100)
        redis_cpu = await redis_cpu_seconds(ctx.redis) - redis_cpu
    finally:
        stack.stop()
    stamps = await task_fields(ctx.redis, stack.keys, ids, "started_at", "completed_at")
    seconds = max(max(int(s[1] or 0) for s in stamps) - min(int(s[0] or 0) for s in stamps), 1) / 1000
    return {
        "tasks_per_s": cfg.drain_n / seconds,
        "concurrency": float(concurrency),
        "redis_cpu_ms_per_1k": redis_cpu * 1000 * 1000 / cfg.drain_n,
    }


async def held(ctx: Context) -> Figures:
    if not has_scheduler():
        return {"late_p50_ms": NO_SCHEDULER, "late_p99_ms": NO_SCHEDULER}
    cfg = ctx.config
    stack = ctx.stack()
    queue = ctx.queue(stack.keys)
    try:
        scheduler = stack.start("streamq.services.scheduler")
        workers = await stack.workers(ctx.redis, cfg.workers, cfg.default_concurrency)
        rate = Rate(limit=1, per_s=cfg.held_per_ms / 1000)
        await limit_store(ctx, queue).set_group("default", "held", Limits(rate=rate))
        done = await queue.submit([TaskCreate(type=STAMP, group="held")] * cfg.held_n)
        ids = [d.task.id for d in done]
        await wait_completed(ctx.redis, stack.keys, cfg.held_n, scheduler, *workers, timeout=60 + cfg.held_n)
    finally:
        stack.stop()
    starts = sorted(handler_time(r[0]) * 1000 for r in await task_fields(ctx.redis, stack.keys, ids, "result"))
    late = [b - a - cfg.held_per_ms for a, b in pairwise(starts)]
    return {
        "late_p50_ms": percentile(late, 50),
        "late_p99_ms": percentile(late, 99),
        "late_max_ms": max(late),
        "starts_per_s": 1000 * (len(starts) - 1) / max(starts[-1] - starts[0], 1),
    }
