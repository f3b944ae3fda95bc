"""Handlers of the tracing end-to-end test (``STREAMQ_HANDLERS=tests.e2e.tracing_handlers``)."""

from __future__ import annotations

import logging
from typing import Any

from streamq.services.worker.registry import TaskContext, handler
from streamq.shared.errors import Retry

log = logging.getLogger("tests.tracing")


@handler("trace_flaky")
async def trace_flaky(payload: Any, ctx: TaskContext) -> str:
    """Fails its first attempt (retried after 0.2 s, through the scheduler), succeeds the next."""
    log.info("trace_flaky running", extra={"task": ctx.task_id, "attempt": ctx.attempt})
    if ctx.attempt == 1:
        raise Retry(after=0.2, reason="first attempt fails on purpose")
    return "ok"
