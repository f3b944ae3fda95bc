"""/api/queues/{queue}/groups: fair per-group concurrency and rate limits (docs/groups-and-limits.md).

``GET`` lists the groups with the most waiting tasks (and those with limits of their own) with their
counts, limits in effect and hold; ``PUT`` sets one group's limits (over the queue's default, which
``PUT /api/queues/{queue}`` sets); ``DELETE`` removes them. Writes are ``admin`` scope like every other
queue write (services/api/security.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel

from streamq.services.api.deps import BrokerDep
from streamq.shared.limits import GroupsPage, Limits, LimitStore, Rate

router = APIRouter(prefix="/api/queues", tags=["groups"])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Group = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


def limit_store(broker: BrokerDep) -> LimitStore:
    queue = broker.default
    return LimitStore(broker.redis, broker.keys, broker.registry, queue.scripts, queue.events_maxlen)


LimitStoreDep = Annotated[LimitStore, Depends(limit_store)]


async def known(name: str, store: LimitStore) -> None:
    """404 for a queue nobody created: reading or removing its limits does not create it (setting does)."""
    if await store.registry.get(name) is None:
        raise HTTPException(status_code=404, detail=f"queue {name!r} not found")


class GroupLimits(BaseModel):
    queue: str
    group: str
    concurrency: int | None
    rate: Rate | None


@router.get("/{name}/groups", responses={404: {"description": "No such queue"}})
async def list_groups(
    name: Name,
    store: LimitStoreDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many groups, most waiting tasks first")] = 50,
) -> GroupsPage:
    """The ``limit`` groups with the most waiting tasks, then groups with limits of their own: pending,
    running, the limits in effect, whether a limit holds them back and when the next may start."""
    await known(name, store)
    return await store.groups(name, limit)


@router.put("/{name}/groups/{group}")
async def set_group_limits(name: Name, group: Group, body: Limits, store: LimitStoreDep) -> GroupLimits:
    """Set one group's limits, applied by every worker together from the next start; a part left out
    follows the queue's default (``group_concurrency`` / ``group_rate`` of ``PUT /api/queues/{queue}``)."""
    await store.set_group(name, group, body)
    return GroupLimits(queue=name, group=group, concurrency=body.concurrency, rate=body.rate)


@router.delete("/{name}/groups/{group}", status_code=204, responses={404: {"description": "No limits of its own"}})
async def delete_group_limits(name: Name, group: Group, store: LimitStoreDep) -> Response:
    """Remove one group's own limits: its tasks follow the queue's default again."""
    await known(name, store)
    if not await store.delete_group(name, group):
        raise HTTPException(status_code=404, detail=f"group {group!r} of queue {name!r} has no limits of its own")
    return Response(status_code=204)
