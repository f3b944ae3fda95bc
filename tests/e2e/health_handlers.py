"""Handlers for the health end-to-end tests (``STREAMQ_HANDLERS=tests.e2e.health_handlers``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from streamq.services.worker.registry import TaskContext, handler


@handler("health_block")
async def block_the_loop(payload: Any, ctx: TaskContext) -> float:
    """A broken handler: ``time.sleep`` inside a coroutine wedges the worker's event loop."""
    time.sleep(float(payload))  # noqa: ASYNC251 - the point of this handler
    return float(payload)


@handler("health_sleep")
async def sleep_politely(payload: Any, ctx: TaskContext) -> float:
    await asyncio.sleep(float(payload))
    return float(payload)
