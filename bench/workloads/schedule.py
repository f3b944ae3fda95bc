"""schedule: tasks due at one instant a few seconds ahead; lateness = handler start - due time
(workers at the tuned concurrency, so the start of 500 tasks is not itself the bottleneck).

Needs the scheduler service (``python -m streamq.services.scheduler``); without it the figures are n/a."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from bench.env import has_scheduler
from bench.handlers import STAMP, TRACE_ENV
from bench.stats import percentile
from bench.workloads.base import Context, Figures, task_fields, wait_completed
from bench.workloads.trace import handler_time, stage_figures
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate

NO_SCHEDULER = "n/a (no scheduler)"


async def run(ctx: Context) -> Figures:
    if not has_scheduler():
        return {"lateness_min_ms": NO_SCHEDULER, "lateness_p50_ms": NO_SCHEDULER, "lateness_p99_ms": NO_SCHEDULER}
    cfg = ctx.config
    stack = ctx.stack()
    queue = ctx.queue(stack.keys)
    try:
        batch = {"STREAMQ_SCHEDULER_BATCH": str(cfg.scheduler_batch)} if cfg.scheduler_batch else {}
        scheduler = stack.start("streamq.services.scheduler", **batch)
        # tuned concurrency: with 3 slots per worker, starting 500 tasks at once would itself take
        # longer than the lateness being measured
        extra = {TRACE_ENV: "1"} if cfg.trace else {}
        workers = await stack.workers(ctx.redis, cfg.workers, cfg.tuned_concurrency, **extra)
        # warm-up: one task due now, so the scheduler is known to be up before the clock starts
        soon = datetime.fromtimestamp(time.time() + 1.0, tz=UTC)
        await queue.submit([TaskCreate(type=STAMP, scheduled_for=soon)])
        await wait_completed(ctx.redis, stack.keys, 1, scheduler, *workers, timeout=60)
        due_ms = int((time.time() + cfg.schedule_ahead_s) * 1000)
        task = TaskCreate(type=STAMP, scheduled_for=datetime.fromtimestamp(due_ms / 1000, tz=UTC))
        ids: list[str] = []
        for start in range(0, cfg.schedule_n, 1_000):
            done = await queue.submit([task] * min(1_000, cfg.schedule_n - start))
            ids += [d.task.id for d in done]
        if time.time() * 1000 > due_ms:
            raise RuntimeError("schedule: submitting took longer than schedule_ahead_s")
        await asyncio.sleep(max(0.0, due_ms / 1000 - time.time()))
        await wait_completed(ctx.redis, stack.keys, cfg.schedule_n + 1, scheduler, *workers, timeout=60)
    finally:
        stack.stop()
    rows = await task_fields(ctx.redis, stack.keys, ids, "result")
    late = [handler_time(r[0]) * 1000 - due_ms for r in rows]
    figures: Figures = {
        "lateness_min_ms": min(late),  # the scheduler's own reaction, before any queueing
        "lateness_p50_ms": percentile(late, 50),
        "lateness_p99_ms": percentile(late, 99),
    }
    if cfg.trace:
        figures.update(await _promoted(ctx, stack.keys, set(ids), due_ms))
        figures.update(stage_figures([due_ms / 1000] * len(rows), [r[0] for r in rows], "late"))
    return figures


async def _promoted(ctx: Context, keys: KeySchema, ids: set[str], due_ms: int) -> Figures:
    """When promote.lua moved each task onto its stream, from its ``promoted`` event's entry id
    (the Redis clock, whole ms): the first and last promotion after the due time."""
    at = [
        int(entry_id.split("-")[0]) - due_ms
        for entry_id, fields in await ctx.redis.xrange(keys.events)
        if fields.get("event") == "promoted" and fields.get("task") in ids
    ]
    if not at:
        return {}
    return {"late_promoted_first_ms": float(min(at)), "late_promoted_last_ms": float(max(at))}
