"""Task types the benchmark's workers load (``STREAMQ_HANDLERS=bench.handlers``).

With ``STREAMQ_BENCH_TRACE=1`` in a worker's environment (the ``--latency-trace`` run only), this
module also wraps a few of the worker's consumer methods to stamp, per task, when its entry was
read and started (take.lua does both in one call, also behind a watcher's blocking read), when the
reclaimer's start.lua was sent and answered, and when the job was dispatched; ``bench.stamp`` then
returns those stamps with its own, so the latency workload can break created-to-started down. The
worker's code is not changed; the normal runs load no wrapper.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

from streamq.services.worker.registry import TaskContext, handler

STAMP = "bench.stamp"
TRACE_ENV = "STREAMQ_BENCH_TRACE"
TRACES: dict[str, dict[str, float]] = {}  # task id -> stage -> time.time()


@handler(STAMP)
async def stamp(payload: Any, ctx: TaskContext) -> Any:
    """The wall-clock time (s) at which the handler started (the task's real start); in a traced
    worker, ``{"handler": that time, <stage>: time, ...}``."""
    now = time.time()
    trace = TRACES.pop(ctx.task_id, None)
    return now if trace is None else {"handler": now, **trace}


def _mark(task_ids: list[str], stage: str) -> None:
    now = time.time()
    for task_id in task_ids:
        TRACES.setdefault(task_id, {})[stage] = now


def _wrap_reads(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def read(self: Any, *args: Any) -> Any:
        jobs = method(self, *args)
        _mark([j.delivery.task_id for j in jobs], "read")  # read and started by take.lua (any path)
        return jobs

    return read


def _wrap_start(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def start(self: Any, deliveries: list[Any]) -> Any:
        ids = [d.task_id for d in deliveries]
        _mark(ids, "start_sent")
        jobs = await method(self, deliveries)
        _mark(ids, "start_replied")
        return jobs

    return start


def _wrap_dispatch(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def dispatch(self: Any, jobs: list[Any]) -> None:
        _mark([j.delivery.task_id for j in jobs], "dispatched")
        method(self, jobs)

    return dispatch


def _trace_worker() -> None:
    from streamq.services.worker.consumer import Consumer

    Consumer.jobs = _wrap_reads(Consumer.jobs)  # type: ignore[method-assign]  # every take.lua reply
    Consumer.start = _wrap_start(Consumer.start)  # type: ignore[method-assign]
    Consumer.dispatch = _wrap_dispatch(Consumer.dispatch)  # type: ignore[method-assign]


if os.environ.get(TRACE_ENV) == "1":
    _trace_worker()
