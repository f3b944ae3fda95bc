"""Handlers for the groups tests (``STREAMQ_HANDLERS=tests.e2e.handlers_groups``). Each run appends
``S <task id> <group> <pid>`` when it starts and ``E <task id> <group> <pid>`` when it ends to ``STREAMQ_TEST_RUNS``
(one short O_APPEND write each, atomic and totally ordered across processes), so a test reads how many
of a group's tasks ran at once from the handlers themselves."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from streamq.services.worker.registry import TaskContext, handler


def note(line: str) -> None:
    path = os.environ.get("STREAMQ_TEST_RUNS")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@handler("grp_run")
async def grp_run(payload: Any, ctx: TaskContext) -> str:
    """Sleeps ``payload["s"]`` seconds between its start and end notes."""
    group = payload.get("g", "-")
    note(f"S {ctx.task_id} {group} {os.getpid()}")
    await asyncio.sleep(float(payload.get("s", 0)))
    note(f"E {ctx.task_id} {group} {os.getpid()}")
    return str(group)


@handler("grp_flaky")
async def grp_flaky(payload: Any, ctx: TaskContext) -> str:
    """Fails its first attempt (a retry goes back through its group's limits), then runs as grp_run."""
    group = payload.get("g", "-")
    note(f"S {ctx.task_id} {group} {os.getpid()}")
    await asyncio.sleep(float(payload.get("s", 0)))
    note(f"E {ctx.task_id} {group} {os.getpid()}")
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return str(group)
