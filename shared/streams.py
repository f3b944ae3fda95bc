"""Stream helpers shared by the worker and the other consumers."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one reclaim pass over a stream took over."""

    entries: list[tuple[str, dict[str, str]]]  # (entry id, fields) now pending for the caller
    deleted: list[str]  # pending ids whose entry was deleted or trimmed (Redis dropped them from the PEL)


async def claim_stale(
    redis: Redis, stream: str, group: str, consumer: str, *, min_idle_ms: int, limit: int, page: int = 100
) -> Claimed:
    """XAUTOCLAIM entries idle for ``min_idle_ms``, following the cursor until it returns to ``0-0``
    (one call scans at most ``10 * COUNT`` PEL entries, so the first page is not the whole PEL), or
    until ``limit`` entries were claimed. Each claim counts as a delivery."""
    cursor = "0-0"
    entries: list[tuple[str, dict[str, str]]] = []
    deleted: list[str] = []
    while len(entries) < limit:
        count = min(page, limit - len(entries))
        reply = await redis.xautoclaim(stream, group, consumer, min_idle_ms, cursor, count=count)
        cursor = reply[0]
        entries += [(msg_id, fields or {}) for msg_id, fields in reply[1]]
        deleted += list(reply[2]) if len(reply) > 2 else []
        if cursor == "0-0":
            break
    return Claimed(entries, deleted)


async def delivery_counts(redis: Redis, stream: str, group: str, consumer: str, ids: list[str]) -> dict[str, int]:
    """How many times each of ``ids`` (pending for ``consumer``) was delivered, from XPENDING."""
    if not ids:
        return {}
    wanted = set(ids)
    ordered = sorted(ids, key=_id_key)
    rows = await redis.xpending_range(
        stream, group, min=ordered[0], max=ordered[-1], count=len(wanted) * 2 + 100, consumername=consumer
    )
    return {r["message_id"]: int(r["times_delivered"]) for r in rows if r["message_id"] in wanted}


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def safe_trim_floor(redis: Redis, stream: str) -> str | None:
    """The lowest id that must be kept: the oldest pending entry of any group, or the first entry
    no group has read yet. None when the stream or its groups are missing."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    if not groups:
        return None
    floors: list[tuple[int, int]] = []
    for g in groups:
        last_ms, last_seq = _id_key(str(g["last-delivered-id"]))
        floors.append((last_ms, last_seq + 1))  # everything after last-delivered is unread
        if int(g["pending"]):
            summary = await redis.xpending(stream, g["name"])
            if summary["min"] is not None:  # None: the group's last entries were acked since XINFO
                floors.append(_id_key(str(summary["min"])))
    ms, seq = min(floors)
    return f"{ms}-{seq}"


async def trim_below_pending(redis: Redis, stream: str) -> int:
    """Trim ``stream`` only below its safe floor (see :func:`safe_trim_floor`), so no pending or
    unread entry is ever trimmed away; returns how many entries were removed."""
    floor = await safe_trim_floor(redis, stream)
    if floor is None:
        return 0
    return int(await redis.xtrim(stream, minid=floor, approximate=False))
