"""/api/stats and /api/workers."""

from __future__ import annotations

from fastapi import APIRouter

from streamq.services.api.deps import BrokerDep, QueueName
from streamq.shared.models import Stats, WorkerInfo

router = APIRouter(prefix="/api", tags=["stats"])


@router.get("/stats")
async def get_stats(broker: BrokerDep, queue: QueueName = None) -> Stats:
    """Task counts per status (index sizes) and lifetime counters, summed over every partition of
    ``queue`` (or of every queue: ``queue`` is then ``*`` when there are several); no scans."""
    return await broker.stats(queue)


@router.get("/workers")
async def list_workers(broker: BrokerDep) -> list[WorkerInfo]:
    """Live worker processes, from their heartbeats (``queues``: the queues each consumes)."""
    return await broker.workers()
