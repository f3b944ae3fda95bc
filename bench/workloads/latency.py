"""latency: workers idle, tasks submitted (library, one script call each) at a steady pace.

created   = the submitting client's clock just before the submit call;
started   = the worker's clock when the handler is entered (``bench.stamp`` returns it);
completed = ``completed_at`` written by finish.lua (Redis clock, whole ms; same host).
With ``--trace``: also the submit call's own round trip and each stage up to the handler
(``bench/workloads/trace.py``).
"""

from __future__ import annotations

import asyncio
import time

from bench.handlers import STAMP, TRACE_ENV
from bench.stats import percentile
from bench.workloads.base import Context, Figures, paced, task_fields, wait_completed
from bench.workloads.trace import handler_time, stage_figures
from streamq.shared.models import TaskCreate


async def run(ctx: Context) -> Figures:
    cfg = ctx.config
    stack = ctx.stack()
    queue = ctx.queue(stack.keys)
    task = TaskCreate(type=STAMP)
    sent: dict[str, float] = {}
    round_trips: list[float] = []
    extra = {TRACE_ENV: "1"} if cfg.trace else {}
    try:
        workers = await stack.workers(ctx.redis, cfg.workers, cfg.default_concurrency, **extra)
        await asyncio.sleep(0.5)  # let the workers settle into their blocking read
        async for _ in paced(cfg.latency_n, cfg.latency_rate):
            created = time.time()
            [done] = await queue.submit([task])
            round_trips.append((time.time() - created) * 1000)
            sent[done.task.id] = created
        await wait_completed(ctx.redis, stack.keys, cfg.latency_n, *workers, timeout=60)
    finally:
        stack.stop()
    ids = list(sent)
    rows = await task_fields(ctx.redis, stack.keys, ids, "result", "completed_at")
    to_start = [(handler_time(r[0]) - sent[i]) * 1000 for i, r in zip(ids, rows, strict=True)]
    to_done = [int(r[1] or 0) - sent[i] * 1000 for i, r in zip(ids, rows, strict=True)]
    figures: Figures = {}
    for name, samples in (("started", to_start), ("completed", to_done)):
        for p in (50, 95, 99):
            figures[f"{name}_p{p}_ms"] = percentile(samples, p)
    if cfg.trace:
        figures["submit_call_p50_ms"] = percentile(round_trips, 50)
        figures["submit_call_p99_ms"] = percentile(round_trips, 99)
        figures.update(stage_figures([sent[i] for i in ids], [r[0] for r in rows], "started"))
    return figures
