"""Prometheus, for real: promtool checks the config and unit-tests the alerts; the real server scrapes a
live local stack through the repo's scrape configuration (only target addresses adapted)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from streamq.testing import free_port, wait_http
from tests.services import StartService
from tests.support import ROOT

PROM_DIR = ROOT / "deploy/prometheus"
SECRET = "whsec_" + base64.b64encode(b"p" * 32).decode()
# job -> (module, how its metrics port is set)
JOBS = {
    "streamq-api": "streamq.services.api",
    "streamq-worker": "streamq.services.worker",
    "streamq-scheduler": "streamq.services.scheduler",
    "streamq-notifier": "streamq.services.notifier",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=PROM_DIR, timeout=60)


def test_promtool_check_config_and_rules() -> None:
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0 and "SUCCESS: 6 rules found" in rules.stdout, rules.stdout + rules.stderr


def test_promtool_unit_tests_every_alert() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    tested = (PROM_DIR / "alerts_test.yml").read_text()
    assert all(f"alertname: {alert}" in tested for alert in alerts)


def adapt(config: dict[str, Any], targets: dict[str, list[str]], interval: str) -> dict[str, Any]:
    """The repo's configuration with only the target addresses (and the scrape interval) changed."""
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    for job in config["scrape_configs"]:
        name = job["job_name"]
        for key in ("static_configs", "dns_sd_configs", "http_sd_configs"):
            job.pop(key, None)
        job["static_configs"] = [{"targets": targets.get(name, [f"127.0.0.1:{free_port()}"])}]
    return config


@pytest.mark.e2e
def test_real_prometheus_scrapes_a_live_stack(start_service: StartService, tmp_path: Path) -> None:
    targets: dict[str, list[str]] = {}
    api_port = free_port()
    start_service("streamq.services.api", STREAMQ_API_PORT=str(api_port))
    targets["streamq-api"] = [f"127.0.0.1:{api_port}"]
    for job, module in JOBS.items():
        if job == "streamq-api":
            continue
        replicas = 2 if job == "streamq-worker" else 1
        targets[job] = []
        for _ in range(replicas):
            port = free_port()
            start_service(module, STREAMQ_METRICS_PORT=str(port), STREAMQ_WEBHOOK_SECRET=SECRET)
            targets[job].append(f"127.0.0.1:{port}")
    prom_port = free_port()
    targets["prometheus"] = [f"127.0.0.1:{prom_port}"]
    config = adapt(yaml.safe_load((PROM_DIR / "prometheus.yml").read_text()), targets, "1s")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROM_DIR / "alerts.yml", tmp_path / "alerts.yml")
    prometheus = shutil.which("prometheus")
    assert prometheus is not None, "`make test` installs Debian's prometheus package"
    proc = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{prom_port}"
        wait_http(f"{base}/-/ready", timeout=30)
        wait_http(f"http://127.0.0.1:{api_port}/api/health")
        with httpx.Client(timeout=10) as client:
            tasks = [{"type": "noop"} for _ in range(7)] + [{"type": "fail", "max_retries": 0} for _ in range(3)]
            r = client.post(f"http://127.0.0.1:{api_port}/api/tasks/batch", json={"tasks": tasks})
            assert r.status_code == 201
            deadline = time.monotonic() + 60
            up: dict[str, str] = {}
            finished: dict[str, float] = {}
            while time.monotonic() < deadline:
                active = (client.get(f"{base}/api/v1/targets")).json()["data"]["activeTargets"]
                up = {t["scrapeUrl"]: t["health"] for t in active}
                result = (
                    client.get(
                        f"{base}/api/v1/query",
                        params={"query": "sum by (status) (streamq_tasks_finished_total)"},
                    )
                ).json()["data"]["result"]
                finished = {r["metric"]["status"]: float(r["value"][1]) for r in result}
                if set(up.values()) == {"up"} and finished == {"completed": 7.0, "failed": 3.0}:
                    break
                time.sleep(0.5)
            expected = sum(len(t) for t in targets.values())
            assert len(up) == expected and set(up.values()) == {"up"}, up
            assert finished == {"completed": 7.0, "failed": 3.0}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
