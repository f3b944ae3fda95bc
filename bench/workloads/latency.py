"""latency: workers idle, tasks submitted (library, one script call each) at a steady pace.

created   = the submitting client's clock just before the submit call;
started   = the worker's clock when the handler is entered (``bench.stamp`` returns it);
completed = ``completed_at`` written by finish.lua (Redis clock, whole ms; same host).
"""

from __future__ import annotations

import asyncio
import time

from bench.handlers import STAMP
from bench.stats import percentile
from bench.workloads.base import Context, Figures, task_fields, wait_completed
from shared.models import TaskCreate


async def run(ctx: Context) -> Figures:
    cfg = ctx.config
    stack = ctx.stack()
    queue = ctx.queue(stack.keys)
    task = TaskCreate(type=STAMP)
    sent: dict[str, float] = {}
    try:
        workers = await stack.workers(ctx.redis, cfg.workers, cfg.default_concurrency)
        await asyncio.sleep(0.5)  # let the workers settle into their blocking read
        t0 = time.perf_counter()
        for i in range(cfg.latency_n):
            delay = t0 + i / cfg.latency_rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            created = time.time()
            [done] = await queue.submit([task])
            sent[done.task.id] = created
        await wait_completed(ctx.redis, stack.keys, cfg.latency_n, *workers, timeout=60)
    finally:
        stack.stop()
    ids = list(sent)
    rows = await task_fields(ctx.redis, stack.keys, ids, "result", "completed_at")
    to_start = [(float(r[0] or 0) - sent[i]) * 1000 for i, r in zip(ids, rows, strict=True)]
    to_done = [int(r[1] or 0) - sent[i] * 1000 for i, r in zip(ids, rows, strict=True)]
    figures: Figures = {}
    for name, samples in (("started", to_start), ("completed", to_done)):
        for p in (50, 95, 99):
            figures[f"{name}_p{p}_ms"] = percentile(samples, p)
    return figures
