"""Task types the benchmark's workers load (``STREAMQ_HANDLERS=bench.handlers``)."""

from __future__ import annotations

import time
from typing import Any

from services.worker.registry import handler

STAMP = "bench.stamp"


@handler(STAMP)
async def stamp(payload: Any) -> float:
    """Returns the wall-clock time (s) at which the handler started: the task's real start."""
    return time.time()
