"""With STREAMQ_PROMETHEUS_URL set, the dashboard's charts come from a real Prometheus that found
every service through the api's http_sd endpoint (/api/services/prometheus-targets)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamq.testing import RedisServer, Stack, free_port, wait_http, wait_until

pytestmark = pytest.mark.e2e

CONFIG = """
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: streamq
    http_sd_configs:
      - url: http://127.0.0.1:{api_port}/api/services/prometheus-targets
        refresh_interval: 1s
"""


@pytest.fixture
def prometheus(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[str, Stack]]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: run `python3 deploy/ensure_deps.py --install` (apt-get install prometheus)")
    stack = Stack(redis_server, tmp_path)
    config = tmp_path / "prometheus.yml"
    config.write_text(CONFIG.format(api_port=stack.api_port))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stack.env["STREAMQ_PROMETHEUS_URL"] = url
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_http(f"{url}/-/ready", timeout=30)
        yield url, stack
    finally:
        stack.close()
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_charts_from_prometheus(prometheus: tuple[str, Stack]) -> None:
    url, stack = prometheus
    stack.start("api", "worker", "dashboard")

    def discovered() -> bool:
        active = stack.http.get(f"{url}/api/v1/targets").json()["data"]["activeTargets"]
        jobs = {t["labels"]["job"]: t["health"] for t in active}
        return all(jobs.get(f"streamq-{kind}") == "up" for kind in ("api", "worker", "dashboard"))

    wait_until(discovered, 30, "Prometheus scrapes the api, the worker and the dashboard")

    def charted() -> bool:
        stack.submit(type="sleep", payload=0.01, priority=4)
        got = stack.http.get(f"{stack.dashboard_url}/dash/history", params={"range_s": 300}).json()
        assert got["source"] == "prometheus"
        points = got["points"]
        return any(p["completed_rate"] for p in points) and any(p["run_p95"] for p in points)

    wait_until(charted, 30, "a completion rate and a run-time p95 from Prometheus")
    points = stack.http.get(f"{stack.dashboard_url}/dash/history", params={"range_s": 300}).json()["points"]
    assert set(points[-1]["depth"]) == {"1", "2", "3", "4", "5"}
