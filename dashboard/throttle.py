"""Login throttling: attempts at ``POST /login`` counted per client address and per key prefix in Redis.

Each attempt takes one from both of its counters before the key is checked (so parallel guesses cannot
slip past a check made before they are counted), and a successful login gives them back: only failures
add up. Past ``MAX_FAILURES`` in a fixed window of ``WINDOW_S`` either counter refuses with 429 and
``Retry-After`` until its window ends. The address counter stops one client guessing; the prefix counter
(the presented key's first ``PREFIX_CHARS`` characters, hashed) stops many addresses completing a key
seen in part. Every counter expires with its window, so the state stays bounded whatever is sent.
"""

from __future__ import annotations

import hashlib
import math

from redis.asyncio import Redis

from streamq.shared.keys import KeySchema

MAX_FAILURES = 10
WINDOW_S = 300
PREFIX_CHARS = 12  # "sq_" and the secret's first 9 characters (54 bits)


class LoginThrottle:
    def __init__(
        self, redis: Redis, keys: KeySchema, *, max_failures: int = MAX_FAILURES, window_s: int = WINDOW_S
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.max_failures = max_failures
        self.window_s = window_s

    def counters(self, client: str, secret: str) -> list[str]:
        prefix = hashlib.sha256(secret[:PREFIX_CHARS].encode()).hexdigest()[:32]
        return [self.keys.dashboard_login(f"addr:{client}"), self.keys.dashboard_login(f"key:{prefix}")]

    async def attempt(self, client: str, secret: str) -> int | None:
        """Count one attempt; the seconds to wait when it is over the limit (then the key must not be
        checked), else None."""
        pipe = self.redis.pipeline(transaction=False)
        for name in self.counters(client, secret):
            pipe.incr(name)
            pipe.expire(name, self.window_s, nx=True)
            pipe.pttl(name)
        replies = await pipe.execute()
        waits = [
            max(1, math.ceil(ttl_ms / 1000)) if ttl_ms > 0 else self.window_s
            for count, _set, ttl_ms in zip(replies[0::3], replies[1::3], replies[2::3], strict=True)
            if int(count) > self.max_failures
        ]
        return max(waits) if waits else None

    async def succeeded(self, client: str, secret: str) -> None:
        """Give back the attempt (a counter that expired meanwhile restarts at -1, with a window again)."""
        pipe = self.redis.pipeline(transaction=False)
        for name in self.counters(client, secret):
            pipe.decr(name)
            pipe.expire(name, self.window_s, nx=True)
        await pipe.execute()
