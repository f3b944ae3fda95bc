"""``/dash/events``: task lifecycle events as server-sent events, fanned out by the Broadcaster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from streamq.dashboard import login
from streamq.dashboard.deps import BroadcasterDep, SessionsDep

router = APIRouter()
KEEPALIVE_S = 15.0


@router.get("/dash/events")
async def events(request: Request, broadcaster: BroadcasterDep, sessions: SessionsDep) -> StreamingResponse:
    """Server-sent events: each message is a JSON list of lifecycle events (event, task, status)."""
    cookie = request.cookies.get(login.COOKIE, "") if login.session_of(request) else None
    queue = broadcaster.subscribe(cookie)

    async def stream() -> AsyncIterator[bytes]:
        checked = time.monotonic()  # when the session was last found in Redis
        try:
            yield b"retry: 1000\nevent: hello\ndata: {}\n\n"
            while True:
                try:
                    batch = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    batch = []
                if batch is None:
                    return
                if cookie is not None and time.monotonic() - checked >= KEEPALIVE_S:
                    # logged out (on another dashboard replica) or expired: the browser reconnects, gets 401
                    if await sessions.get(cookie) is None:
                        return
                    checked = time.monotonic()
                yield (b"data: " + orjson.dumps(batch) + b"\n\n") if batch else b": keep-alive\n\n"
        finally:
            broadcaster.unsubscribe(queue, cookie)

    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
