"""The api's guard (pure ASGI): header and URL size limits, API keys with scopes, and the rate limit.

Order: size limits (431/414) -> identify the caller (bearer token -> key) -> rate limit per key, or per
client address without a key (429 + Retry-After) -> 401 without a valid key when keys are configured
-> 403 when the key lacks the route's scope. ``/api/health`` and ``/api/live`` are always open.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from redis.exceptions import RedisError, ResponseError
from starlette.types import ASGIApp, Receive, Scope, Send

from streamq.services.api.unavailable import redis_answer, send_json
from streamq.shared.auth import ApiKey, verify
from streamq.shared.auth import Scope as KeyScope
from streamq.shared.keys import KeySchema
from streamq.shared.refusals import counted_refusal
from streamq.shared.scripts import Scripts

MAX_HEADER_BYTES = 16 * 1024
MAX_URL_BYTES = 8 * 1024
OPEN_PATHS = frozenset({"/api/health", "/api/live"})  # the probes (kubelet sends no key)
SUBMIT_PATHS = frozenset({"/api/tasks", "/api/tasks/batch"})


def required_scope(method: str, path: str) -> KeyScope | None:
    """The scope a route needs: submitting is ``submit``, reading is ``read``, any other change ``admin``."""
    if path in OPEN_PATHS:
        return None
    if method == "POST" and path in SUBMIT_PATHS:
        return KeyScope.SUBMIT
    if method in ("GET", "HEAD", "OPTIONS"):
        return KeyScope.READ
    return KeyScope.ADMIN


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


async def respond(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: ASGIApp, *, keys: list[ApiKey], limiter: Any) -> None:
        self.app = app
        self.keys = keys
        self.limiter_ref = limiter  # () -> RateLimiter | None (made in the lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            await respond(send, 431, f"request headers are larger than {MAX_HEADER_BYTES} bytes")
            return
        if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > MAX_URL_BYTES:
            await respond(send, 414, f"the URL is longer than {MAX_URL_BYTES} bytes")
            return
        path, method = scope["path"], scope["method"]
        needed = required_scope(method, path)
        key = self._identify(scope)
        scope.setdefault("state", {})["api_key"] = key
        limiter: RateLimiter | None = self.limiter_ref()
        if limiter is not None and needed is not None:
            try:
                await limiter.take(caller_id(scope))
            except RateLimited as error:
                headers = [(b"retry-after", str(error.retry_after_s).encode())] if error.retry_after_s else []
                await respond(send, 429, str(error), headers)
                return
            except RedisError as error:  # outside the app's exception handlers: the same answer as theirs
                answer = redis_answer(error)
                if answer is None:
                    raise
                await send_json(send, *answer)
                return
        if self.keys and needed is not None:
            if key is None:
                await respond(send, 401, "a valid API key is required: Authorization: Bearer <key>",
                              [(b"www-authenticate", b'Bearer realm="streamq"')])  # fmt: skip
                return
            if needed not in key.scopes:
                await respond(send, 403, f"the key {key.name!r} lacks the {needed.value!r} scope for {method} {path}")
                return
        await self.app(scope, receive, send)

    def _identify(self, scope: Scope) -> ApiKey | None:
        if not self.keys:
            return None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return verify(self.keys, token.strip())
        return None
