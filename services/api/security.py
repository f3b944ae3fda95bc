"""The api's guard (pure ASGI): header and URL size limits, API keys with scopes, and the rate limit.

Order: size limits (431/414) -> identify the caller (bearer token -> key) -> rate limit per key, or per
client address without a key (429 + Retry-After) -> 401 without a valid key when keys are configured
-> 403 when the key lacks the route's scope. ``/api/health`` and ``/api/live`` are always open.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from streamq.services.api.answers import send_error
from streamq.services.api.ratelimit import RateLimited, RateLimiter, caller_id
from streamq.shared.auth import ApiKey, verify
from streamq.shared.auth import Scope as KeyScope

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
            except (RateLimited, RedisError) as error:  # outside the app's exception handlers: their answer
                await send_error(error, scope, receive, send)
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
