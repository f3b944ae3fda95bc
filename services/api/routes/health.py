"""/api/live (liveness: the process answers; never touches Redis), /api/health (readiness: Redis
answers; open without a key, so probes use it), /api/ready (the same check, behind a read key) and /metrics."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.exceptions import RedisError

from streamq.services.api.deps import RedisDep
from streamq.services.api.unavailable import writes
from streamq.shared.redis import ping

router = APIRouter(tags=["health"])
PING_TIMEOUT_S = 2.0  # a probe answers within this even while the client retries a lost Redis


async def _ping(redis: RedisDep) -> tuple[bool, float, str]:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(ping(redis), PING_TIMEOUT_S)
        return True, (time.perf_counter() - start) * 1000, ""
    except (RedisError, OSError) as error:
        return False, 0.0, str(error)
    except TimeoutError:
        return False, 0.0, f"no answer from Redis within {PING_TIMEOUT_S} s"


@router.get("/api/live")
async def live() -> JSONResponse:
    """Liveness: answered by the event loop alone, so a Redis outage never gets api pods restarted."""
    return JSONResponse({"status": "ok"})


@router.get("/api/health")
async def health(request: Request, redis: RedisDep) -> JSONResponse:
    ok, ms, error = await _ping(redis)
    body = {"status": "ok" if ok else "unavailable", "redis": "ok" if ok else error, "redis_ms": round(ms, 3)}
    if ok:  # reads still work while Redis refuses writes: still 200, with the cause in `writes`
        queue = request.app.state.queue
        body["writes"] = await writes(queue.scripts, queue.keys.stats, PING_TIMEOUT_S)
        guard = request.app.state.broker.memory_guard  # docs/api.md: Memory guard
        body["memory_ratio"] = round(guard.ratio, 4)
        if body["writes"] == "ok" and guard.tripped:
            body["writes"] = "memory_guard"  # Redis takes writes, the api refuses new tasks
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/api/ready")
async def ready(redis: RedisDep) -> JSONResponse:
    ok, _ms, error = await _ping(redis)
    return JSONResponse({"ready": ok, **({"error": error} if error else {})}, status_code=200 if ok else 503)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    await request.app.state.queue_metrics.refresh()  # queue depth and scheduled count, read now
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
