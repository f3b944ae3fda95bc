"""Starting and watching service processes for the reliability end-to-end tests."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from redis.asyncio import Redis

from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.settings import Settings
from streamq.testing import Service


def service_env(settings: Settings, runs: Path | None = None, **extra: object) -> dict[str, str]:
    env = {
        "STREAMQ_REDIS_URL": settings.redis_url,
        "STREAMQ_KEY_PREFIX": settings.key_prefix,
        "STREAMQ_QUEUE": settings.queue,
        "STREAMQ_HANDLERS": "tests.e2e.handlers",
        "STREAMQ_METRICS_PORT": "0",
        "STREAMQ_HEARTBEAT_S": "1",
        "STREAMQ_LOG_LEVEL": "INFO",
    }
    if runs is not None:
        env["STREAMQ_TEST_RUNS"] = str(runs)
    env.update({f"STREAMQ_{k.upper()}": str(v) for k, v in extra.items()})
    return env


async def wait_logged(service: Service, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in service.log():
        if service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{service.log()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service.name} did not log {text!r} within {timeout} s:\n{service.log()}")
        await asyncio.sleep(0.05)


async def start_workers(env: dict[str, str], log_dir: Path, n: int, name: str = "worker") -> list[Service]:
    workers = [Service("streamq.services.worker", env, log_dir, name=f"{name}{i}") for i in range(n)]
    for w in workers:
        await wait_logged(w, "worker started")
    return workers


async def start_schedulers(env: dict[str, str], log_dir: Path, n: int) -> list[Service]:
    schedulers = [Service("streamq.services.scheduler", env, log_dir, name=f"scheduler{i}") for i in range(n)]
    for s in schedulers:
        await wait_logged(s, "scheduler started")
    return schedulers


async def held_by(redis: Redis, keys: KeySchema, pid: int) -> int:
    """Entries pending for the consumer of the worker process ``pid``, on every priority stream."""
    held = 0
    for stream in keys.streams():
        for c in await redis.xinfo_consumers(stream, WORKER_GROUP):
            if f":{pid}:" in c["name"]:
                held += int(c["pending"])
    return held


async def group_state(redis: Redis, keys: KeySchema) -> tuple[int, int]:
    """(pending entries, unread entries) of the worker group over every priority stream."""
    pending = unread = 0
    for stream in keys.streams():
        for g in await redis.xinfo_groups(stream):
            pending += int(g["pending"])
            # XINFO's "lag" is null after deletions, so count the entries past last-delivered-id
            unread += len(await redis.xrange(stream, min=f"({g['last-delivered-id']}", max="+"))
    return pending, unread


def stop_all(services: list[Service]) -> None:
    """SIGTERM every service first, then wait for each (they shut down in parallel)."""
    for s in services:
        if s.proc.poll() is None:
            s.signal(signal.SIGTERM)
    for s in services:
        s.stop(timeout=15)
