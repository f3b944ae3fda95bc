"""schedule: tasks due at one instant a few seconds ahead; lateness = handler start - due time.

Needs the scheduler service (``python -m services.scheduler``); without it the figures are n/a."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from bench.env import has_scheduler
from bench.handlers import STAMP
from bench.stats import percentile
from bench.workloads.base import Context, Figures, task_fields, wait_completed
from shared.models import TaskCreate

NO_SCHEDULER = "n/a (no scheduler)"


async def run(ctx: Context) -> Figures:
    if not has_scheduler():
        return {"lateness_p50_ms": NO_SCHEDULER, "lateness_p99_ms": NO_SCHEDULER}
    cfg = ctx.config
    stack = ctx.stack()
    queue = ctx.queue(stack.keys)
    try:
        scheduler = stack.start("services.scheduler")
        workers = await stack.workers(ctx.redis, cfg.workers, cfg.default_concurrency)
        due_ms = int((time.time() + cfg.schedule_ahead_s) * 1000)
        task = TaskCreate(type=STAMP, scheduled_for=datetime.fromtimestamp(due_ms / 1000, tz=UTC))
        ids: list[str] = []
        for start in range(0, cfg.schedule_n, 1_000):
            done = await queue.submit([task] * min(1_000, cfg.schedule_n - start))
            ids += [d.task.id for d in done]
        if time.time() * 1000 > due_ms:
            raise RuntimeError("schedule: submitting took longer than schedule_ahead_s")
        await asyncio.sleep(max(0.0, due_ms / 1000 - time.time()))
        await wait_completed(ctx.redis, stack.keys, cfg.schedule_n, scheduler, *workers, timeout=60)
    finally:
        stack.stop()
    rows = await task_fields(ctx.redis, stack.keys, ids, "result")
    late = [float(r[0] or 0) * 1000 - due_ms for r in rows]
    return {"lateness_p50_ms": percentile(late, 50), "lateness_p99_ms": percentile(late, 99)}
