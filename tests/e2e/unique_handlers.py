"""Handlers for tests/e2e/test_unique_e2e.py, loaded by worker processes with
``STREAMQ_HANDLERS=tests.e2e.unique_handlers``: each run appends one line (task id, payload JSON) to
``STREAMQ_TEST_RUNS`` (one short O_APPEND write, atomic across processes), so a test sees what ran."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from streamq.services.worker.registry import TaskContext, handler


def read_runs(path: str) -> list[tuple[str, Any]]:
    """(task id, payload) of every run recorded in ``path``."""
    if not os.path.exists(path):
        return []
    with open(path) as runs:
        return [(task, json.loads(payload)) for task, payload in (line.split(" ", 1) for line in runs if line.strip())]


@handler("uq_record")
async def uq_record(payload: Any, ctx: TaskContext) -> Any:
    """Records its run, then sleeps ``payload["sleep"]`` seconds when the payload asks for it."""
    fd = os.open(os.environ["STREAMQ_TEST_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.task_id} {json.dumps(payload)}\n".encode())
    finally:
        os.close(fd)
    if isinstance(payload, dict) and payload.get("sleep"):
        await asyncio.sleep(float(payload["sleep"]))
    return payload
