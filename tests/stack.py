"""A live stack as real processes (api, worker, scheduler, notifier, dashboard) on free ports,
for e2e and browser tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support import RedisServer, Service, free_port, wait_http


class Stack:
    def __init__(self, redis: RedisServer, log_dir: Path, **env: str) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.api_port, self.dashboard_port = free_port(), free_port()
        self.env = {
            "STREAMQ_REDIS_URL": redis.url,
            "STREAMQ_KEY_PREFIX": self.prefix,
            "STREAMQ_API_PORT": str(self.api_port),
            "STREAMQ_DASHBOARD_PORT": str(self.dashboard_port),
            "STREAMQ_API_URL": self.api_url,
            "STREAMQ_HEARTBEAT_S": "1",
            "STREAMQ_SHUTDOWN_GRACE_S": "5",
            **env,
        }
        self.log_dir = log_dir
        self.services: dict[str, Service] = {}
        self.http = httpx.Client(timeout=10)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, *names: str) -> Stack:
        modules = {
            "api": "streamq.services.api",
            "worker": "streamq.services.worker",
            "dashboard": "streamq.dashboard",
            "scheduler": "streamq.services.scheduler",
            "notifier": "streamq.services.notifier",
        }
        for name in names:
            self.services[name] = Service(modules[name], self.env, self.log_dir, name=name)
        if "api" in names:
            wait_http(f"{self.api_url}/api/health")
        if "dashboard" in names:
            wait_http(f"{self.dashboard_url}/dash/config")
        return self

    def stop(self, *names: str) -> None:
        for name in names or tuple(self.services):
            service = self.services.pop(name, None)
            if service is not None:
                service.stop()

    def close(self) -> None:
        self.stop()
        self.http.close()

    def submit(self, **task: Any) -> dict[str, Any]:
        response = self.http.post(f"{self.api_url}/api/tasks", json=task)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def task(self, task_id: str) -> dict[str, Any]:
        return self.http.get(f"{self.api_url}/api/tasks/{task_id}").json()  # type: ignore[no-any-return]

    def services_of(self, kind: str) -> list[dict[str, Any]]:
        return [s for s in self.http.get(f"{self.api_url}/api/services").json() if s["kind"] == kind]


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        time.sleep(0.05)
