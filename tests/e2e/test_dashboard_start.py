"""The dashboard finds the api from STREAMQ_API_PORT alone, and starting before the api is quiet."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx

from streamq.shared.settings import Settings
from streamq.testing import RedisServer, Service, free_port, wait_http


def test_the_api_url_follows_the_api_port_unless_set() -> None:
    assert Settings(_env_file=None).api_url == "http://127.0.0.1:8080"  # type: ignore[call-arg]
    assert Settings(api_port=9123, _env_file=None).api_url == "http://127.0.0.1:9123"  # type: ignore[call-arg]
    wildcard = Settings(api_host="0.0.0.0", api_port=9123, _env_file=None)  # type: ignore[call-arg]
    assert wildcard.api_url == "http://127.0.0.1:9123"
    assert Settings(api_host="::1", api_port=9123, _env_file=None).api_url == "http://[::1]:9123"  # type: ignore[call-arg]
    named = Settings(api_port=9123, api_url="http://api.internal:8080", _env_file=None)  # type: ignore[call-arg]
    assert named.api_url == "http://api.internal:8080"


def lines(service: Service) -> list[dict[str, object]]:
    return [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]


def test_a_dashboard_started_before_the_api_waits_quietly_and_samples_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    api_port, dashboard_port = free_port(), free_port()
    env = {
        "STREAMQ_REDIS_URL": redis_server.url,
        "STREAMQ_KEY_PREFIX": f"t{uuid.uuid4().hex[:10]}",
        "STREAMQ_API_PORT": str(api_port),  # and no STREAMQ_API_URL
        "STREAMQ_DASHBOARD_PORT": str(dashboard_port),
        "STREAMQ_HISTORY_INTERVAL_S": "0.3",
        "STREAMQ_LOG_LEVEL": "DEBUG",
    }
    dashboard = Service("streamq.dashboard", env, tmp_path, name="dashboard")
    api = None
    try:
        dashboard_url = f"http://127.0.0.1:{dashboard_port}"
        wait_http(f"{dashboard_url}/dash/config", 60)
        deadline = time.monotonic() + 30
        while not any(str(e["msg"]).startswith("no sample") for e in lines(dashboard)):  # a sample tried, refused
            assert time.monotonic() < deadline, dashboard.log()
            time.sleep(0.1)
        api = Service("streamq.services.api", env, tmp_path, name="api")
        wait_http(f"http://127.0.0.1:{api_port}/api/health", 60)
        deadline = time.monotonic() + 30
        while not httpx.get(f"{dashboard_url}/dash/history", params={"range_s": 60}).json()["points"]:
            assert time.monotonic() < deadline, dashboard.log()  # the api at the derived URL is sampled
            time.sleep(0.1)
    finally:
        dashboard.stop()  # before the api: its samples would (rightly) warn that the api is gone
        if api is not None:
            api.stop()
    refused = [e for e in lines(dashboard) if str(e["msg"]).startswith("no sample")]
    assert refused and all(e["level"] == "debug" for e in refused), refused
    assert not [e for e in lines(dashboard) if e["level"] in ("warning", "error")], dashboard.log()
