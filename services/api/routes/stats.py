"""/api/stats and /api/workers."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.deps import QueueDep
from shared.models import Stats, WorkerInfo

router = APIRouter(prefix="/api", tags=["stats"])


@router.get("/stats")
async def get_stats(queue: QueueDep) -> Stats:
    """Task counts per status (index sizes) and lifetime counters: one round trip, no scans."""
    return await queue.stats()


@router.get("/workers")
async def list_workers(queue: QueueDep) -> list[WorkerInfo]:
    """Live worker processes, from their heartbeats."""
    return await queue.workers()
