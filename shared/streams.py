"""Stream helpers shared by the worker and the other consumers."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError


async def ensure_group(redis: Redis, streams: list[str], group: str) -> None:
    """Create ``group`` on every stream from id 0 (so nothing queued earlier is skipped), creating
    the stream if needed. An existing group (BUSYGROUP) is fine; any other error is raised."""
    for stream in streams:
        try:
            await redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as error:
            if not str(error).startswith("BUSYGROUP"):
                raise
