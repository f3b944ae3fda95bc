"""Chart history: from the dashboard's own samples in Redis, or from Prometheus range queries.

Both give the same shape: ``{"source", "step_s", "points": [{"t": ms, "completed_rate", "failed_rate",
"depth": {priority: n}, "wait_p50", "wait_p95", "run_p50", "run_p95"}]}``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema

MAX_POINTS = 600
PROMQL = {
    "completed_rate": 'sum(rate(streamq_tasks_finished_total{status="completed"}[1m]))',
    "failed_rate": 'sum(rate(streamq_tasks_finished_total{status="failed"}[1m]))',
    "wait_p50": "histogram_quantile(0.5, sum by (le) (rate(streamq_task_wait_seconds_bucket[1m])))",
    "wait_p95": "histogram_quantile(0.95, sum by (le) (rate(streamq_task_wait_seconds_bucket[1m])))",
    "run_p50": "histogram_quantile(0.5, sum by (le) (rate(streamq_task_run_seconds_bucket[1m])))",
    "run_p95": "histogram_quantile(0.95, sum by (le) (rate(streamq_task_run_seconds_bucket[1m])))",
    "depth": "sum by (priority) (streamq_queue_depth)",
}


def step_for(range_s: int, interval_s: float) -> float:
    return max(interval_s, range_s / MAX_POINTS)


async def read_samples(redis: Redis, keys: KeySchema, range_s: int, interval_s: float) -> list[dict[str, Any]]:
    """Samples of the last ``range_s``; at most ``MAX_POINTS``, one per step (one round trip either way)."""
    now = int(time.time() * 1000)
    start = now - range_s * 1000
    step_ms = int(step_for(range_s, interval_s) * 1000)
    if step_ms <= interval_s * 1000:
        entries = await redis.xrange(keys.history, min=str(start), max="+", count=MAX_POINTS * 2)
    else:
        pipe = redis.pipeline(transaction=False)
        for t in range(start, now, step_ms):
            pipe.xrange(keys.history, min=str(t), max=str(t + step_ms - 1), count=1)
        entries = [e for reply in await pipe.execute() for e in reply]
    return [orjson.loads(fields["s"]) for _, fields in entries]


def to_points(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rates from consecutive counters (a drop means the counters were reset: no rate there)."""
    points = []
    previous: dict[str, Any] | None = None
    for s in samples:
        point = {k: s.get(k) for k in ("t", "depth", "wait_p50", "wait_p95", "run_p50", "run_p95")}
        for name in ("completed", "failed"):
            rate = None
            if previous is not None and s["t"] > previous["t"]:
                change = s[f"{name}_total"] - previous[f"{name}_total"]
                rate = change / ((s["t"] - previous["t"]) / 1000) if change >= 0 else None
            point[f"{name}_rate"] = rate
        points.append(point)
        previous = s
    return points


async def from_redis(redis: Redis, keys: KeySchema, range_s: int, interval_s: float) -> dict[str, Any]:
    samples = await read_samples(redis, keys, range_s, interval_s)
    return {"source": "redis", "step_s": step_for(range_s, interval_s), "points": to_points(samples)}


async def from_prometheus(client: httpx.AsyncClient, url: str, range_s: int) -> dict[str, Any]:
    """One ``query_range`` per series, merged on their timestamps."""
    end = time.time()
    step = max(2.0, range_s / MAX_POINTS)
    params = {"start": f"{end - range_s:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    points: dict[int, dict[str, Any]] = {}
    for name, query in PROMQL.items():
        response = await client.get(f"{url.rstrip('/')}/api/v1/query_range", params={**params, "query": query})
        response.raise_for_status()
        for series in response.json()["data"]["result"]:
            priority = series["metric"].get("priority")
            for t, raw in series["values"]:
                value = float(raw)
                point = points.setdefault(int(float(t) * 1000), {"t": int(float(t) * 1000), "depth": {}})
                if not math.isfinite(value):
                    continue
                if name == "depth":
                    if priority is not None:
                        point["depth"][priority] = value
                else:
                    point[name] = value
    ordered = [points[t] for t in sorted(points)]
    for point in ordered:
        for name in PROMQL:
            if name != "depth":
                point.setdefault(name, None)
    return {"source": "prometheus", "step_s": step, "points": ordered}
