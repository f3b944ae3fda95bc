"""Redis out of reach (down, failing over, a cluster slot without a master) or refusing writes (out of
memory under ``noeviction``, a read-only replica, a failed persistence check): the api answers 503 with
``Retry-After`` and a JSON body naming the cause, not 500. services/api/answers.py maps these errors
to that answer, through :func:`redis_answer`.

A request cut off by an unreachable Redis may or may not have been applied (the command can fail after
Redis ran it), so a client retries a submit with an ``Idempotency-Key`` to be safe. A refused write was
not applied (a script is refused before its first write), but a batch spread over several partitions
is one script call per partition, so the others may have been written: the same retry covers both.
503 rather than 507 for a full Redis: the condition is the service's and passes (finished tasks expire,
an operator raises ``maxmemory``, a failover ends), and clients and proxies retry a 503 after
``Retry-After``, which 507 (WebDAV's "Insufficient Storage", about the request's own body) does not ask."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import RedisError

from streamq.shared.refusals import CAUSES, UNREACHABLE, counted_refusal, refusal
from streamq.shared.scripts import Scripts

RETRY_AFTER_S = 1  # Redis out of reach: a restart or a failover takes seconds
REFUSED_RETRY_AFTER_S = 5  # Redis refusing writes: memory or a replica's role comes back more slowly


def unavailable_body(error: BaseException) -> dict[str, Any]:
    return {
        "detail": f"Redis is unavailable ({type(error).__name__}: {error}); retry in a moment. The request "
        "may or may not have been applied: retry a submit with the same Idempotency-Key to be safe",
        "cause": "unreachable",
    }


def refused_body(cause: str, error: BaseException) -> dict[str, Any]:
    return {
        "detail": f"Redis refuses writes: {CAUSES[cause]} ({_first_sentence(error)}); reads still work. The "
        "refused write was not applied; retry later, a submit with the same Idempotency-Key to be safe",
        "cause": cause,
    }


def _first_sentence(error: BaseException) -> str:
    """Redis's own words, without the script's sha and line it appends."""
    return str(error).split(" script: ", 1)[0]


def redis_answer(error: BaseException) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    """(status, JSON body, headers) for Redis out of reach or refusing writes; None for any other error
    (the caller raises it again: a 500, as for any bug)."""
    if isinstance(error, UNREACHABLE):
        return 503, unavailable_body(error), {"Retry-After": str(RETRY_AFTER_S)}
    cause = counted_refusal(error)
    if cause is not None:
        return 503, refused_body(cause, error), {"Retry-After": str(REFUSED_RETRY_AFTER_S)}
    return None


async def writes(scripts: Scripts, key: str, timeout_s: float) -> str:
    """``ok`` while Redis accepts writes, else the cause it refuses them for (``/api/health``'s ``writes``;
    ``writable.lua`` writes nothing, so asking costs no memory). ``unknown`` for another error or no
    answer within ``timeout_s`` (Redis out of reach: the health check's PING reports that)."""
    try:
        async with asyncio.timeout(timeout_s):
            await scripts.call("writable", [key], [])
    except (RedisError, OSError) as error:  # TimeoutError is an OSError
        return refusal(error) or "unknown"
    return "ok"
