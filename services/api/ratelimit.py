"""The api's rate limit: a Redis token bucket per caller (an API key, else the client address), shared by
every api replica. The guard (services/api/security.py) takes one token per request; a batch takes one
more per task beyond the first (``POST /api/tasks/batch``)."""

from __future__ import annotations

import math

from redis.exceptions import ResponseError
from starlette.types import Scope

from streamq.shared.auth import ApiKey
from streamq.shared.keys import KeySchema
from streamq.shared.refusals import counted_refusal
from streamq.shared.scripts import Scripts


class RateLimited(Exception):
    def __init__(self, retry_after_ms: int) -> None:
        super().__init__(f"rate limit exceeded; retry after {math.ceil(retry_after_ms / 1000)} s")
        self.retry_after_s = max(1, math.ceil(retry_after_ms / 1000))


class OverBurst(Exception):
    """A request costing more tokens than the bucket holds: it can never pass, however long the caller
    waits, so it is refused (422) rather than told to retry (429)."""

    def __init__(self, cost: int, burst: int) -> None:
        super().__init__(
            f"{cost} tasks can never pass the rate limit: each task takes a token and the burst is {burst}; "
            f"send at most {burst} tasks per batch"
        )
        self.cost = cost
        self.burst = burst


class RateLimiter:
    """A Redis token bucket per caller, shared by every api replica (``shared/lua/ratelimit.lua``)."""

    def __init__(self, scripts: Scripts, keys: KeySchema, rate: float, burst: int) -> None:
        self.scripts = scripts
        self.keys = keys
        self.rate = rate
        self.burst = burst

    async def take(self, client: str, cost: int = 1) -> None:
        """Raises RateLimited when the tokens are not there yet, OverBurst when they never can be."""
        if cost > self.burst:
            raise OverBurst(cost, self.burst)
        try:
            allowed, value = await self.scripts.call(
                "ratelimit", [self.keys.rate_limit(client)], [self.rate, self.burst, cost]
            )
        except ResponseError as error:
            # a read-only replica or a failed persistence check refuses the bucket's write (a full Redis
            # still runs the script: allow-oom): the request goes on unlimited, and Redis refuses its writes
            if counted_refusal(error) is None:
                raise
            return
        if not int(allowed):
            if int(value) < 0:  # the script's answer for a cost over the burst (also checked above)
                raise OverBurst(cost, self.burst)
            raise RateLimited(int(value))

    async def take_batch(self, client: str, tasks: int) -> None:
        """A batch costs one token per task; the request took the first one already (the Guard), so
        the rest is taken here. A batch over the burst never fits, even into a full bucket."""
        if tasks > self.burst:
            raise OverBurst(tasks, self.burst)
        if tasks > 1:
            await self.take(client, tasks - 1)


def caller_id(scope: Scope) -> str:
    key: ApiKey | None = scope.get("state", {}).get("api_key")
    if key is not None:
        return f"key:{key.name}"
    client = scope.get("client")
    return f"addr:{client[0] if client else 'unknown'}"
