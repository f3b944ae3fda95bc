"""Handlers for the reliability end-to-end tests, loaded by the worker processes with
``STREAMQ_HANDLERS=tests.e2e.handlers``. Each run appends its task id to ``STREAMQ_TEST_RUNS``
(one short O_APPEND write per run, atomic across processes), so tests count runs per task."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from streamq.services.worker.registry import TaskContext, handler


def record_run(task_id: str) -> None:
    path = os.environ.get("STREAMQ_TEST_RUNS")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{task_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def read_runs(path: str) -> list[tuple[str, int]]:
    """(task id, worker pid) of every run recorded in ``path``."""
    if not os.path.exists(path):
        return []
    with open(path) as runs:
        return [(task, int(pid)) for task, pid in (line.split() for line in runs if line.strip())]


@handler("rel_sleep")
async def rel_sleep(payload: Any, ctx: TaskContext) -> float:
    record_run(ctx.task_id)
    await asyncio.sleep(float(payload))
    return float(payload)


@handler("rel_crash")
async def rel_crash(payload: Any, ctx: TaskContext) -> None:
    """Kills its own worker process (after ``payload`` seconds), every time it runs."""
    record_run(ctx.task_id)
    await asyncio.sleep(float(payload or 0))
    os._exit(1)
