"""A handler only some workers load (``STREAMQ_HANDLERS=tests.e2e.handlers,tests.e2e.handlers_extra``): the
tests of workers with different handler sets on one queue."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from streamq.services.worker.registry import TaskContext, handler
from tests.e2e.handlers import record_run


@handler("extra_echo")
async def extra_echo(payload: Any) -> dict[str, Any]:
    return {"echo": payload, "pid": os.getpid()}


@handler("cancel_sleep")
async def cancel_sleep(payload: Any, ctx: TaskContext) -> float:
    """Sleeps ``payload`` seconds (a cancel ends the sleep with CancelledError)."""
    record_run(ctx.task_id)
    await asyncio.sleep(float(payload))
    return float(payload)


@handler("cancel_poll")
def cancel_poll(payload: Any, ctx: TaskContext) -> str:
    """A sync handler that works in small steps for up to ``payload`` seconds and stops once cancelled."""
    record_run(ctx.task_id)
    deadline = time.monotonic() + float(payload)
    while time.monotonic() < deadline:
        if ctx.cancelled:
            record_run(f"{ctx.task_id}-saw-cancel")
            return "stopped"
        time.sleep(0.02)
    return "done"


@handler("cancel_deaf")
def cancel_deaf(payload: Any, ctx: TaskContext) -> str:
    """A sync handler that never looks at ``ctx.cancelled``: sleeps ``payload`` seconds."""
    record_run(ctx.task_id)
    time.sleep(float(payload))
    return "done"


@handler("progress_async")
async def progress_async(payload: Any, ctx: TaskContext) -> int:
    """Reports ``payload`` steps (2,000 reports each, as fast as it can), a short sleep per step."""
    steps = int(payload)
    for step in range(1, steps + 1):
        for _ in range(2000):
            ctx.progress(step / steps, f"step {step} of {steps}")
        await asyncio.sleep(0.3)
    return steps


@handler("progress_sync")
def progress_sync(payload: Any, ctx: TaskContext) -> str:
    """Reports half way, then waits (in its thread) until ``payload`` seconds have passed, ignoring a
    cancel request for 10 s (far past a test worker's grace: the task is recorded cancelled first) and
    ending then, so a worker's stop does not wait for the rest of ``payload``."""
    ctx.progress(0.5, "half way")
    end = time.monotonic() + float(payload)
    asked = False
    while time.monotonic() < end:
        if ctx.cancelled and not asked:
            asked, end = True, min(end, time.monotonic() + 10)
        time.sleep(0.05)
    return "done"


@handler("progress_forever")
async def progress_forever(payload: Any, ctx: TaskContext) -> None:
    """Reports progress every 50 ms, ``payload`` x 20 times (about ``payload`` seconds of running: a
    process stopped meanwhile reports the rest once it runs again)."""
    record_run(ctx.task_id)
    for n in range(1, int(float(payload) * 20) + 1):
        ctx.progress(min(1.0, n / 1000), f"tick {n} on {os.getpid()}")
        await asyncio.sleep(0.05)


@handler("progress_bad")
async def progress_bad(payload: Any, ctx: TaskContext) -> str:
    """Reports an out-of-range fraction: the ValueError fails the task like any handler error."""
    ctx.progress(float(payload))
    return "unreachable"
