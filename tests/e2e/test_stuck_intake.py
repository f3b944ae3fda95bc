"""A worker whose intake is stuck fails /readyz while its loop and heartbeat run on: its take and
blocking-read connections are wedged by a TCP proxy between it and Redis (a half-open connection:
the command is sent and no reply ever comes, as after a NAT or firewall drops a flow silently),
while its other connections (heartbeat, registration) still pass."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from streamq.shared.scripts import source
from streamq.shared.settings import Settings
from streamq.testing import free_port
from tests.services import StartService

pytestmark = [pytest.mark.e2e, pytest.mark.standalone_only(reason="one proxy in front of one redis-server")]

TAKE_SHA = hashlib.sha1(source("take").encode()).hexdigest().encode()


class WedgingProxy:
    """Forwards every connection to Redis; once ``wedge`` is set, a connection that sends take.lua
    (or a blocking read with it) is held open and never forwarded again, either way."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.wedge = False
        self.wedged = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        stuck = asyncio.Event()
        pumps = [
            self._pump(reader, up_writer, stuck, inspect=True),
            self._pump(up_reader, writer, stuck, inspect=False),
        ]
        for pump in pumps:
            task = asyncio.create_task(pump)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, stuck: asyncio.Event, *, inspect: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                if inspect and self.wedge and TAKE_SHA in data and not stuck.is_set():
                    stuck.set()
                    self.wedged += 1
                if stuck.is_set():
                    await asyncio.Event().wait()  # held open, silent: the peer waits for a reply forever
                dst.write(data)
                await dst.drain()
        dst.close()

    async def close(self) -> None:
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await self.server.wait_closed()


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            reply = await client.get(f"http://127.0.0.1:{port}/readyz")
        except httpx.HTTPError:
            return 0, {}
    return reply.status_code, reply.json()


async def wait_ready(port: int, want: str, timeout: float = 40) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        code, body = await readyz(port)
        if body.get("status") == want:
            return body
        assert time.monotonic() < deadline, f"/readyz never said {want}: {code} {body}"
        await asyncio.sleep(0.2)


async def test_a_stuck_intake_fails_readiness_while_the_heartbeat_runs(
    start_service: StartService, settings: Settings
) -> None:
    target = urlsplit(settings.redis_url)
    proxy = WedgingProxy(target.hostname or "127.0.0.1", target.port or 6379)
    proxy_port = await proxy.start()
    metrics = free_port()
    try:
        worker = start_service(
            "streamq.services.worker",
            STREAMQ_REDIS_URL=f"redis://127.0.0.1:{proxy_port}/0",
            STREAMQ_METRICS_PORT=str(metrics),
        )
        body = await wait_ready(metrics, "ok")
        assert body["intake_age_s"] < body["intake_stale_after_s"]
        proxy.wedge = True
        stuck = await wait_ready(metrics, "stuck")
        assert proxy.wedged >= 1
        assert stuck["intake_age_s"] >= stuck["intake_stale_after_s"]
        assert stuck["redis_age_s"] < stuck["stale_after_s"]  # the heartbeat still reaches Redis
        async with httpx.AsyncClient(timeout=2) as client:
            assert (await client.get(f"http://127.0.0.1:{metrics}/livez")).status_code == 200
        assert worker.proc.poll() is None
        worker.signal(signal.SIGKILL)  # its wedged calls would hold a SIGTERM's drain; the test is done
        worker.wait(timeout=10)
    finally:
        await proxy.close()
