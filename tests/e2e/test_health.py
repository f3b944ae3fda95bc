"""/livez and /readyz of the worker, scheduler and notifier, and the api's /api/live, as real
processes: readiness follows Redis and SIGTERM, liveness follows the event loop and never Redis."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamq.shared.auth import config_line
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.redis import make_client
from streamq.shared.settings import Settings
from streamq.testing import Service, free_port, wait_port, wait_until

pytestmark = pytest.mark.e2e

SECRET = "whsec_ZGV2ZWxvcG1lbnQgb25seSwgc2V0IHlvdXIgb3du"


class RedisOnPort:
    """A redis-server on a port chosen before it starts (so a service can be pointed at it first)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tempfile.mkdtemp(prefix="streamq-redis-")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_port() -> Iterator[list[RedisOnPort]]:
    started: list[RedisOnPort] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def services(log_dir: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


def env_for(redis_url: str, prefix: str, metrics_port: int, **extra: str) -> dict[str, str]:
    return {
        "STREAMQ_REDIS_URL": redis_url,
        "STREAMQ_KEY_PREFIX": prefix,
        "STREAMQ_METRICS_PORT": str(metrics_port),
        "STREAMQ_HEARTBEAT_S": "0.5",  # readiness goes stale after 3 s without Redis
        "STREAMQ_HANDLERS": "tests.e2e.health_handlers",
        **extra,
    }


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        reply = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
    except httpx.HTTPError:
        return 0, {}
    return reply.status_code, reply.json()


def wait_probe(port: int, path: str, code: int, status: str, timeout: float = 20.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        got, body = probe(port, path)
        return body if got == code and body.get("status") == status else None

    return wait_until(check, timeout, f"{path} on {port} is {code} {status}")  # type: ignore[no-any-return]


async def submit(redis_url: str, prefix: str, task_type: str, payload: float) -> str:
    redis = make_client(Settings(redis_url=redis_url, _env_file=None))  # type: ignore[call-arg]  # any topology
    try:
        [done] = await Queue(redis, KeySchema(prefix, "default")).submit([TaskCreate(type=task_type, payload=payload)])
        return done.task.id
    finally:
        await redis.aclose()


async def task_status(redis_url: str, prefix: str, task_id: str) -> str:
    redis = make_client(Settings(redis_url=redis_url, _env_file=None))  # type: ignore[call-arg]  # any topology
    try:
        return (await Queue(redis, KeySchema(prefix, "default")).get(task_id)).status.value
    finally:
        await redis.aclose()


@pytest.mark.standalone_only(reason="starts its own plain redis-server: the cluster would add nothing")
def test_worker_readiness_waits_for_redis_and_follows_it(
    redis_port: list[RedisOnPort], services: list[Service], log_dir: Path, prefix: str
) -> None:
    """Started before Redis: live at once, ready (200) only once Redis answers, stale (503) after
    Redis goes away, while /livez stays 200 throughout."""
    port, metrics_port = free_port(), free_port()
    worker = Service("streamq.services.worker", env_for(f"redis://127.0.0.1:{port}/0", prefix, metrics_port), log_dir)
    services.append(worker)
    wait_probe(metrics_port, "/livez", 200, "ok")
    code, body = probe(metrics_port, "/readyz")
    assert (code, body["status"], body["redis_age_s"]) == (503, "starting", None)
    assert "worker started" not in worker.log()  # still waiting for Redis (connect retries for 10 s)

    redis_port.append(RedisOnPort(port))
    ready = wait_probe(metrics_port, "/readyz", 200, "ok")
    assert 0 <= ready["redis_age_s"] < ready["stale_after_s"] == 3.0
    assert "worker started" in worker.log()
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text.count("streamq_tasks_in_progress") > 0

    redis_port[0].stop()  # a Redis outage: not ready, still alive (restarting would not help)
    stale = wait_probe(metrics_port, "/readyz", 503, "stale")
    assert stale["redis_age_s"] >= 3.0
    assert probe(metrics_port, "/livez")[0] == 200
    assert worker.proc.poll() is None


async def test_sigterm_turns_readiness_503_while_the_worker_drains(
    settings: Settings, services: list[Service], log_dir: Path
) -> None:
    metrics_port = free_port()
    env = env_for(settings.redis_url, settings.key_prefix, metrics_port, STREAMQ_SHUTDOWN_GRACE_S="30")
    worker = Service("streamq.services.worker", env, log_dir)
    services.append(worker)
    wait_probe(metrics_port, "/readyz", 200, "ok")
    task_id = await submit(settings.redis_url, settings.key_prefix, "health_sleep", 4)
    for _ in range(600):  # until the worker runs it (bounded: 600 reads)
        if await task_status(settings.redis_url, settings.key_prefix, task_id) == "processing":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the task never ran:\n{worker.log()}")

    worker.signal(signal.SIGTERM)
    stopping = wait_probe(metrics_port, "/readyz", 503, "stopping")
    assert stopping["redis_age_s"] is not None
    assert probe(metrics_port, "/livez")[0] == 200  # draining is alive
    assert worker.proc.poll() is None  # still draining the running task
    assert worker.wait(30) == 0
    assert await task_status(settings.redis_url, settings.key_prefix, task_id) == "completed"


async def test_a_wedged_event_loop_fails_liveness(settings: Settings, services: list[Service], log_dir: Path) -> None:
    """A handler that blocks the loop (time.sleep in a coroutine): /livez 503 while it blocks, 200 after;
    the HTTP server is a thread of its own, so it still answers (with the truth)."""
    metrics_port = free_port()
    env = env_for(settings.redis_url, settings.key_prefix, metrics_port, STREAMQ_LIVENESS_STALE_S="2")
    worker = Service("streamq.services.worker", env, log_dir)
    services.append(worker)
    wait_probe(metrics_port, "/readyz", 200, "ok")
    wait_probe(metrics_port, "/livez", 200, "ok")
    task_id = await submit(settings.redis_url, settings.key_prefix, "health_block", 8)

    wedged = wait_probe(metrics_port, "/livez", 503, "stale")
    assert wedged["loop_age_s"] >= wedged["stale_after_s"] == 2.0
    wait_probe(metrics_port, "/livez", 200, "ok")  # the handler returned; the loop runs again
    assert await task_status(settings.redis_url, settings.key_prefix, task_id) == "completed"


@pytest.mark.parametrize("module", ["streamq.services.scheduler", "streamq.services.notifier"])
def test_scheduler_and_notifier_serve_both_probes(
    module: str, settings: Settings, services: list[Service], log_dir: Path
) -> None:
    metrics_port = free_port()
    env = env_for(settings.redis_url, settings.key_prefix, metrics_port, STREAMQ_WEBHOOK_SECRET=SECRET)
    service = Service(module, env, log_dir)
    services.append(service)
    wait_probe(metrics_port, "/readyz", 200, "ok")
    wait_probe(metrics_port, "/livez", 200, "ok")
    assert "# TYPE" in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    service.signal(signal.SIGTERM)
    assert service.wait(30) == 0


@pytest.mark.standalone_only(reason="starts its own plain redis-server: the cluster would add nothing")
def test_api_liveness_never_needs_redis_or_a_key(
    redis_port: list[RedisOnPort], services: list[Service], log_dir: Path, prefix: str
) -> None:
    port, api_port = free_port(), free_port()
    redis_port.append(RedisOnPort(port))
    keys = config_line("ops", ["read"], "sq_health_secret")
    env = env_for(f"redis://127.0.0.1:{port}/0", prefix, 0, STREAMQ_API_PORT=str(api_port), STREAMQ_API_KEYS=keys)
    services.append(Service("streamq.services.api", env, log_dir))
    url = f"http://127.0.0.1:{api_port}"
    api = services[-1]

    def ready() -> bool:
        assert api.proc.poll() is None, "the api exited while starting"
        return probe(api_port, "/api/health")[0] == 200

    wait_until(ready, 60, "the api is ready")  # 60 s: on a loaded host its imports alone took 18 s once
    assert httpx.get(f"{url}/api/live").json() == {"status": "ok"}
    assert httpx.get(f"{url}/api/ready").status_code == 401  # the keyed twin of /api/health

    redis_port[0].stop()
    assert httpx.get(f"{url}/api/live", timeout=5).status_code == 200
    assert httpx.get(f"{url}/api/health", timeout=10).status_code == 503  # readiness: out of the Service
