"""A handler only some workers load (``STREAMQ_HANDLERS=tests.e2e.handlers,tests.e2e.handlers_extra``): the
tests of workers with different handler sets on one queue."""

from __future__ import annotations

import os
from typing import Any

from services.worker.registry import handler


@handler("extra_echo")
async def extra_echo(payload: Any) -> dict[str, Any]:
    return {"echo": payload, "pid": os.getpid()}
