"""Real servers on loopback for the webhook, SSRF and http task tests: an HTTP receiver (uvicorn,
in the test's event loop) that records every request and answers from a script, and a raw TCP
canary that counts every connection it gets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from streamq.testing import free_port
from tests.integration.helpers import running


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_s: float = 0.0


class Receiver:
    """ASGI app: per path, a list of answers used in order (the last one repeats)."""

    def __init__(self) -> None:
        self.script: dict[str, list[Answer]] = {}
        self.requests: list[Received] = []
        self.port = free_port()
        self.host = "127.0.0.1"
        self.in_flight = 0  # requests received and not yet answered

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def on(self, path: str, *answers: Answer) -> None:
        self.script[path] = list(answers)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def _next(self, path: str) -> Answer:
        answers = self.script.get(path) or [Answer()]
        return answers.pop(0) if len(answers) > 1 else answers[0]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender went away mid-request (e.g. SIGKILLed): nothing was delivered
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(Received(scope["method"], scope["path"], headers, body, time.time()))
        answer = self._next(scope["path"])
        self.in_flight += 1
        try:
            if answer.delay_s:
                await asyncio.sleep(answer.delay_s)
            raw = [(k.encode(), v.encode()) for k, v in answer.headers.items()]
            await send({"type": "http.response.start", "status": answer.status, "headers": raw})
            await send({"type": "http.response.body", "body": answer.body})
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[Receiver]:
    """Serve ``receiver`` with uvicorn in this event loop."""
    config = uvicorn.Config(
        receiver, host=receiver.host, port=receiver.port, log_level="warning", lifespan="off", ws="none",
        http="h11", access_log=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class Canary:
    """Accepts TCP connections on 127.0.0.1 (and ::1 when the host has IPv6) on one port, counts
    them and closes them. Any count above zero means a refused URL reached loopback."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self.servers: list[asyncio.Server] = []

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\ncanary")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> Canary:
        self.servers.append(await asyncio.start_server(self._accept, "127.0.0.1", self.port))
        with contextlib.suppress(OSError):
            self.servers.append(await asyncio.start_server(self._accept, "::1", self.port, family=socket.AF_INET6))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


async def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


def running_notifier(settings: Any, consumer: str | None = None) -> contextlib.AbstractAsyncContextManager[Any]:
    """The notifier in-process (as ``python -m streamq.services.notifier`` runs it), stopped cleanly."""
    from streamq.services.notifier.main import Notifier

    return running(Notifier(settings, consumer=consumer))
