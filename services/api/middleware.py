"""Pure ASGI middleware: request body limit (413, enforced while streaming), JSON nesting limit (422,
before anything parses the body) and HTTP metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamq.shared import metrics
from streamq.shared.jsondepth import text_deeper_than

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyLimit:
    """Refuses a body over ``max_bytes`` with 413, from Content-Length or while it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send)
                return
        seen = 0
        rejected = False

        async def limited_receive() -> Message:
            # Over the limit: answer 413 now and tell the app the client went away, so the
            # rest of the body is never read and the app's own response is dropped.
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    rejected = True
                    await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, send: Send) -> None:
        await _send_error(send, 413, "body_too_large", f"request body is larger than {self.max_bytes} bytes")


class JsonDepth:
    """Refuses a request body nested deeper than ``max_depth`` levels with 422, before anything parses
    it: Python's JSON parser recurses once per level (a body 900 levels deep failed the api with 500).
    Reads the body (bounded by BodyLimit in front) and hands it on untouched. Requests for which
    ``skip(scope)`` is true pass unread: the submit fast path checks those on the body it reads anyway
    (:func:`too_deep`), so that the common submit is read once."""

    def __init__(self, app: ASGIApp, max_depth: int, skip: Callable[[Scope], bool] | None = None) -> None:
        self.app = app
        self.max_depth = max_depth
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS or (self.skip and self.skip(scope)):
            await self.app(scope, receive, send)
            return
        messages = await read_body(receive)
        if await too_deep(b"".join(m.get("body", b"") for m in messages), self.max_depth, send):
            return
        await self.app(scope, replay(messages, receive), send)


async def too_deep(body: bytes, max_depth: int, send: Send) -> bool:
    """Whether ``body`` nests deeper than ``max_depth``; if so, the 422 is sent."""
    if not text_deeper_than(body, max_depth):
        return False
    msg = f"JSON nested deeper than {max_depth} levels of arrays and objects"
    await _send_error(send, 422, "json_too_deep", msg)
    return True


async def read_body(receive: Receive) -> list[Message]:
    """Every message of the request body (ends early at a disconnect)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives back the messages already read, then the real ones."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _send_error(send: Send, status: int, kind: str, msg: str) -> None:
    """An error about the whole body, in the shape of a 422's error list."""
    body = orjson.dumps({"detail": [{"loc": ["body"], "msg": msg, "type": kind}]})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HttpMetrics:
    """Counts requests and times them by route template (not raw path, to bound the labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # each label set's children, looked up once (``labels()`` costs more than the update)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            count, timing = self._child(scope["method"], path, status)
            count.inc()
            timing.observe(time.perf_counter() - start)

    def _child(self, method: str, path: str, status: int) -> tuple[Any, Any]:
        key = (method, path, status)
        children = self._children.get(key)
        if children is None:
            children = (
                metrics.HTTP_REQUESTS.labels(method, path, str(status)),
                metrics.HTTP_REQUEST_SECONDS.labels(method, path),
            )
            self._children[key] = children
        return children
