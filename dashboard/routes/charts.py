"""What the page's charts need: the queue and history source (``/dash/config``) and the series
(``/dash/history``, from the dashboard's samples in Redis or from Prometheus)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from streamq.dashboard import history
from streamq.dashboard.deps import KeysDep, RedisDep, SettingsDep, UpstreamDep

router = APIRouter()


@router.get("/dash/config")
async def config(settings: SettingsDep) -> dict[str, Any]:
    return {
        "queue": settings.queue,
        "history": "prometheus" if settings.prometheus_url else "redis",
        "interval_s": settings.history_interval_s,
    }


@router.get("/dash/history")
async def chart_history(
    settings: SettingsDep,
    keys: KeysDep,
    redis: RedisDep,
    upstream: UpstreamDep,
    range_s: Annotated[int, Query(ge=60, le=24 * 3600)] = 900,
) -> dict[str, Any]:
    """Chart series over the last ``range_s`` seconds (at most 600 points)."""
    if settings.prometheus_url:
        return await history.from_prometheus(upstream.client, settings.prometheus_url, range_s)
    return await history.from_redis(redis, keys, range_s, settings.history_interval_s)
