"""Test helpers on top of the process harness (:mod:`streamq.testing`: Redis servers, free ports, service
processes): the checkout's root, the api in-process, a partition's task ids, a process's memory, a chunked
upload."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from streamq.shared.keys import KeySchema
    from streamq.shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def in_process_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The api app in-process, through httpx's ASGI transport, with its lifespan run."""
    from streamq.services.api.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def task_ids(redis: Redis, keys: KeySchema) -> list[str]:
    """Every task id of a partition, sorted: the union of its status indexes (each task is in exactly
    one; there is no index of all tasks). Not atomic: for a test's settled state."""
    pipe = redis.pipeline(transaction=False)
    for index in keys.status_indexes():
        pipe.zrange(index, 0, -1)
    return sorted(task_id for page in await pipe.execute() for task_id in page)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def chunked_upload(port: int, path: str, cap: int) -> tuple[int, bytes]:
    """POST a chunked body of up to ``cap`` bytes until the server answers; returns how many bytes were
    sent before it did and the start of its reply (the status line and headers)."""
    sent = 0
    chunk = b"x" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    reply = b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: streamq\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        sock.settimeout(0.001)
        try:
            while sent < cap and not reply:
                sock.sendall(framed)
                sent += len(chunk)
                with contextlib.suppress(TimeoutError, BlockingIOError):
                    reply = sock.recv(4096)
            if not reply:
                sock.sendall(b"0\r\n\r\n")  # the whole body is out: the server answers now at the latest
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(60)
        while b"\r\n\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    return sent, reply


async def until_server_ms(redis: Redis, ms: float) -> None:
    """Return once the Redis server's clock has passed ``ms`` (epoch milliseconds): a test whose tasks
    are due at ``ms`` then knows every script sees them due, however slowly the test itself ran."""
    for _ in range(3000):
        server_s, server_us = await redis.time()
        if server_s * 1000 + server_us / 1000 > ms:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the server's clock did not pass {ms} ms")
