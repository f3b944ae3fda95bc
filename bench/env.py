"""The benchmark's environment: a private redis-server, service processes, machine facts."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import httpx
from redis.asyncio import Redis

from streamq import testing
from streamq.shared.keys import KeySchema
from streamq.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
SCHEDULER_MAIN = ROOT / "services" / "scheduler" / "__main__.py"


def load() -> float:
    """The 1-minute load average (the machine is shared: recorded with every figure)."""
    return round(os.getloadavg()[0], 2)


def has_scheduler() -> bool:
    return SCHEDULER_MAIN.exists()


class RedisServer(testing.RedisServer):
    """A private redis-server on a free loopback port, no persistence, ``noeviction``."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise SystemExit("bench: redis-server is missing; run: python3 deploy/ensure_deps.py --install")
        super().__init__()

    def client(self) -> Redis:
        return Redis.from_url(self.url, decode_responses=True)


class Service(testing.Service):
    """``python -m <module>`` with the given environment, its output in a log file; with ``profile_dir``,
    py-spy records it."""

    def __init__(self, module: str, env: dict[str, str], log_dir: Path, profile_dir: Path | None = None) -> None:
        super().__init__(module, env, log_dir, cwd=ROOT)
        self.spy = _spy(self.proc.pid, profile_dir, module) if profile_dir else None

    def stop(self, timeout: float = 30.0) -> int | None:
        code = super().stop(timeout)
        if self.spy is not None:
            self.spy.wait(timeout=30)  # py-spy writes its file once the process is gone
        return code


def _spy(pid: int, profile_dir: Path, module: str) -> subprocess.Popen[bytes]:
    """``py-spy record`` on a service (needs root or ptrace rights), collapsed stacks (``--format raw``)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit('bench: --profile needs py-spy: .venv/bin/pip install -e ".[profile]"')
    profile_dir.mkdir(parents=True, exist_ok=True)
    out = profile_dir / f"{module.rsplit('.', 1)[-1]}-{pid}.txt"
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


class Stack:
    """Services of one workload, all on one fresh key prefix; stopped on exit."""

    def __init__(self, redis: HasUrl, log_dir: Path, profile_dir: Path | None = None) -> None:
        self.redis = redis
        self.log_dir = log_dir
        self.profile_dir = profile_dir
        self.prefix = f"b{uuid.uuid4().hex[:8]}"
        self.keys = KeySchema(self.prefix, "default")
        self.services: list[Service] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "STREAMQ_REDIS_URL": self.redis.url,
            "STREAMQ_KEY_PREFIX": self.prefix,
            "STREAMQ_HANDLERS": "bench.handlers",
            "STREAMQ_LOG_FORMAT": "json",
            "STREAMQ_LOG_LEVEL": "WARNING",
            **extra,
        }

    def start(self, module: str, **extra: str) -> Service:
        service = Service(module, self.env(**extra), self.log_dir, self.profile_dir)
        self.services.append(service)
        return service

    async def api(self, **extra: str) -> tuple[str, Service]:
        port = free_port()
        service = self.start("streamq.services.api", STREAMQ_API_PORT=str(port), **extra)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            await until(lambda: _answers(client, f"{url}/api/ready"), service, what="api ready")
        return url, service

    async def workers(self, redis: Redis, count: int, concurrency: int, **extra: str) -> list[Service]:
        started = [
            self.start("streamq.services.worker", STREAMQ_WORKER_CONCURRENCY=str(concurrency), **extra)
            for _ in range(count)
        ]

        async def registered() -> bool:
            return int(await redis.zcard(self.keys.workers)) >= count

        await until(registered, *started, what="workers registered")
        return started

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()


async def _answers(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url, timeout=1.0)).status_code == 200
    except httpx.HTTPError:
        return False


async def until(check: Any, *services: Service, what: str, timeout: float = 30.0, every: float = 0.02) -> None:
    """Poll ``await check()`` until true; fail early if a service died, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        for service in services:
            service.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: timed out waiting for {what}")
        await asyncio.sleep(every)


async def redis_cpu_seconds(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
