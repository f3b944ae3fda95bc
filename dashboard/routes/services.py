"""``/dash/services``: the api's registry of live processes, with what their ``/metrics`` said."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from streamq.dashboard.deps import BearerDep, SamplerDep, UpstreamDep

router = APIRouter()


@router.get("/dash/services")
async def services(upstream: UpstreamDep, sampler: SamplerDep, bearer: BearerDep) -> list[dict[str, Any]]:
    """Every live process (from the api's registry) with whether its ``/metrics`` answered at the
    last sample and the tasks it had in progress then."""
    listed: list[dict[str, Any]] = await upstream.json("GET", "/api/services", headers=bearer)
    scraped = {s.service_id: s for s in sampler.latest}
    for service in listed:
        result = scraped.get(service["id"])
        service["metrics_up"] = None if result is None else result.up
        service["metrics_error"] = None if result is None else result.error
        service["in_progress"] = None if result is None or not result.up else result.total("streamq_tasks_in_progress")
    return listed
