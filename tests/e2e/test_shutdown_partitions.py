"""Stopping the notifier and the dashboard after Redis went away, with a few hundred partitions: their
per-partition loops (the notifier's lanes, the dashboard's event feeds) are stopped together, so the
process exits within its grace period rather than after a couple of seconds per partition."""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.loops import STOP_WITHIN_S
from streamq.shared.queues import MAX_PARTITIONS, QueueRegistry
from streamq.testing import RedisServer, Service, free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.standalone_only("stops its own redis-server")]
QUEUES = 5  # 5 x 64 partitions, plus the default queue's one
PARTITIONS = QUEUES * MAX_PARTITIONS + 1
EXIT_WITHIN_S = 60.0  # generous; one loop after another took over 70 s with far fewer partitions
CANCELLED = "background loop cancelled at shutdown"


async def make_partitions(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        registry = QueueRegistry(client, KeySchema(prefix, "default"))
        for i in range(QUEUES):
            await registry.configure(f"wide{i}", MAX_PARTITIONS)
        assert len(await registry.all_partitions("default")) == PARTITIONS
    finally:
        await client.aclose()


def connected_clients(server: RedisServer) -> int:
    info = subprocess.run(
        ["redis-cli", "-p", str(server.port), "info", "clients"], capture_output=True, text=True, check=True
    ).stdout
    return int(next(line for line in info.splitlines() if line.startswith("connected_clients:")).split(":")[1])


def started(service: str, process: Service, server: RedisServer) -> bool:
    """Every partition's loop is running: the notifier says so; the dashboard's feeds (made in one
    go, once the registry is read) are reading when its connection pool is in use."""
    assert process.proc.poll() is None, process.log()
    if service == "notifier":
        return "notifier started" in process.log()
    return connected_clients(server) >= 32


@pytest.mark.parametrize("service", ["notifier", "dashboard"])
def test_stops_within_its_grace_with_redis_gone_and_hundreds_of_partitions(service: str, tmp_path: Path) -> None:
    server = RedisServer()
    prefix = "shutdown"
    try:
        asyncio.run(make_partitions(server.url, prefix))
        env = {
            "STREAMQ_REDIS_URL": server.url,
            "STREAMQ_KEY_PREFIX": prefix,
            "STREAMQ_SHUTDOWN_GRACE_S": "5",
            "STREAMQ_DASHBOARD_PORT": str(free_port()),
            "STREAMQ_API_URL": f"http://127.0.0.1:{free_port()}",  # no api: the dashboard only reads events
            "STREAMQ_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"shutdown-test-secret-0123456789a").decode(),
        }
        process = Service(
            "streamq.services.notifier" if service == "notifier" else "streamq.dashboard", env, tmp_path, name=service
        )
        try:
            wait_until(lambda: started(service, process, server), 60, f"the {service}'s loops running")
            server.stop()  # Redis goes away; every loop's next call fails or retries
            process.signal(signal.SIGTERM)
            code = process.wait(EXIT_WITHIN_S)
        finally:
            process.stop()
        log = process.log()
        cancelled = log.count(CANCELLED)
        print(f"{service}: exit {code}; {cancelled} loops cancelled at shutdown")
        assert code in (0, -signal.SIGTERM), log[-3000:]  # uvicorn re-raises the signal it handled
        # each cancelled loop was waited for STOP_WITHIN_S first: more of them than fit one after
        # another into the time the process took means they were waited for together
        assert cancelled * STOP_WITHIN_S > EXIT_WITHIN_S, log[-3000:]
    finally:
        if server.proc.poll() is None:
            server.stop()
