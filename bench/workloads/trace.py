"""Per-stage figures of traced runs (``--trace``): where a task's time from created (or due) to its
handler goes. Each stage's p50/p99 is over the tasks that passed through it; the stages' p50s add
up to about the total's p50 (percentiles of sums are not sums of percentiles).

Stages, each from the previous stamp (``time.time()`` on one host):
``read``: the worker's fetch or blocking read returned the entry (from created: the submit script,
Redis waking the blocked reader, the reply reaching the worker; from due: the scheduler's pass too);
``start_sent``: start.lua sent; ``start_replied``: start.lua answered; ``dispatched``: the job's
asyncio task created; ``handler``: the handler entered.
"""

from __future__ import annotations

from typing import Any

import orjson

from bench.stats import percentile
from bench.workloads.base import Figures

STAGES = ("read", "start_sent", "start_replied", "dispatched", "handler")


def handler_time(result: str | None) -> float:
    """The handler's start (s) from ``bench.stamp``'s result, traced or not."""
    value: Any = orjson.loads(result or "0")
    return float(value["handler"] if isinstance(value, dict) else value)


def stage_figures(origins: list[float], results: list[str | None], prefix: str) -> Figures:
    """``<prefix>_<stage>_p50_ms`` / ``_p99_ms`` for each stage, from each task's origin (created or
    due, seconds) and its traced result."""
    spans: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for origin, result in zip(origins, results, strict=True):
        trace: Any = orjson.loads(result or "0")
        if not isinstance(trace, dict):
            continue
        previous = origin
        for stage in STAGES:
            if stage in trace:
                spans[stage].append((trace[stage] - previous) * 1000)
                previous = trace[stage]
    figures: Figures = {}
    for stage, samples in spans.items():
        if samples:
            figures[f"{prefix}_{stage}_p50_ms"] = percentile(samples, 50)
            figures[f"{prefix}_{stage}_p99_ms"] = percentile(samples, 99)
    return figures
