"""wait: tasks submitted at a steady pace, each long-polled through the api until it ends.

One api and one worker (default concurrency). ``wait_waiters`` keep-alive connections each take the
next submitted task and send ``GET /api/tasks/{id}?wait=30`` as soon as its submit returned. The tasks
are the built-in ``sleep`` of ``wait_hold_s`` (default 50 ms), so each waiter is parked in the api
before its task ends and is woken by the partition reader's fan-out: a noop would often end within
the GET's own round trip, and the api would then answer from its first read of the task, which is
not the path measured here. ``answered_before_end`` counts the waiters that came too late anyway.

heard     = the waiter's clock when the api's answer (status ``completed``) arrived;
completed = ``completed_at`` written by finish.lua (Redis clock, whole ms; same host).
"""

from __future__ import annotations

import asyncio
import time

import orjson

from bench.stats import percentile
from bench.workloads.base import Context, Figures, paced, task_fields
from bench.workloads.http import Connection, encode_get
from streamq.shared.models import TaskCreate

WAIT_S = 30  # each long-poll's wait: far longer than any task here takes


async def run(ctx: Context) -> Figures:
    cfg = ctx.config
    stack = ctx.stack()
    queue = ctx.queue(stack.keys)
    task = TaskCreate(type="sleep", payload=cfg.wait_hold_s)
    todo: asyncio.Queue[str | None] = asyncio.Queue()
    sent: dict[str, float] = {}
    heard: dict[str, float] = {}
    try:
        base, api = await stack.api()
        await stack.workers(ctx.redis, 1, cfg.default_concurrency)
        conns = [await Connection.open(base) for _ in range(cfg.wait_waiters)]
        waiters = [asyncio.create_task(_waiter(conn, base, todo, sent, heard)) for conn in conns]
        api_cpu = api.cpu_seconds()
        async for _ in paced(cfg.wait_n, cfg.wait_rate):
            [done] = await queue.submit([task])
            todo.put_nowait(done.task.id)
        for _ in waiters:
            todo.put_nowait(None)  # each waiter stops once the tasks are handed out
        await asyncio.wait_for(asyncio.gather(*waiters), timeout=WAIT_S + 30)
        api_cpu = api.cpu_seconds() - api_cpu
    finally:
        stack.stop()
    ids = list(heard)
    rows = await task_fields(ctx.redis, stack.keys, ids, "completed_at")
    completed = [int(r[0] or 0) for r in rows]
    to_heard = [heard[i] * 1000 - c for i, c in zip(ids, completed, strict=True)]
    figures: Figures = {f"heard_p{p}_ms": percentile(to_heard, p) for p in (50, 95, 99)}
    figures["heard_max_ms"] = max(to_heard)
    figures["waiters"] = float(cfg.wait_waiters)
    figures["answered_before_end"] = float(sum(sent[i] * 1000 >= c for i, c in zip(ids, completed, strict=True)))
    figures["api_cpu_ms_per_1k"] = api_cpu * 1000 * 1000 / cfg.wait_n
    return figures


async def _waiter(
    conn: Connection, base: str, todo: asyncio.Queue[str | None], sent: dict[str, float], heard: dict[str, float]
) -> None:
    """Long-poll each task taken from ``todo`` until it is completed, stamping when the answer came."""
    try:
        while (task_id := await todo.get()) is not None:
            request = encode_get(base, f"/api/tasks/{task_id}?wait={WAIT_S}")
            sent[task_id] = time.time()
            status, body = await conn.send(request)
            heard[task_id] = time.time()
            state = orjson.loads(body).get("status") if status == 200 else None
            if state != "completed":
                raise RuntimeError(f"wait: task {task_id} answered {status} {body[:300]!r}")
    finally:
        await conn.close()
