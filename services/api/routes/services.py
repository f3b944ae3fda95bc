"""/api/services: every live process of every service, and the same as Prometheus scrape targets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from streamq.services.api.deps import QueueDep
from streamq.shared.registry import ServiceInfo, live_services, prometheus_targets

router = APIRouter(prefix="/api/services", tags=["services"])


@router.get("")
async def list_services(queue: QueueDep) -> list[ServiceInfo]:
    """Registered processes (api, worker, scheduler, notifier, dashboard) with a live heartbeat."""
    return await live_services(queue.redis, queue.keys)


@router.get("/prometheus-targets")
async def targets(queue: QueueDep) -> list[dict[str, Any]]:
    """Target groups in Prometheus ``http_sd`` / ``file_sd`` JSON, one per process."""
    return prometheus_targets(await live_services(queue.redis, queue.keys))
