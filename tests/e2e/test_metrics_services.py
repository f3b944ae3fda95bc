"""Each service's /metrics as real processes: parses with prometheus-client's parser, has its
families, and its counters move when tasks run; the registry lists every process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamq.shared.settings import Settings
from streamq.testing import RedisServer, Stack, wait_until

pytestmark = pytest.mark.e2e

WORKER_FAMILIES = {
    "streamq_tasks_finished",
    "streamq_task_retries",
    "streamq_tasks_dead_lettered",
    "streamq_tasks_reclaimed",
    "streamq_task_run_seconds",
    "streamq_task_wait_seconds",
    "streamq_tasks_in_progress",
}
API_FAMILIES = {
    "streamq_tasks_submitted",
    "streamq_queue_depth",
    "streamq_scheduled_tasks",
    "streamq_http_requests",
    "streamq_http_request_seconds",
}


@pytest.fixture
def stack(redis_server: RedisServer, log_dir: Path) -> Iterator[Stack]:
    stack = Stack(redis_server, log_dir)
    yield stack
    stack.close()


DEFAULT_CONCURRENCY = Settings.model_fields["worker_concurrency"].default


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample values by sample name, then by sorted labels."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        out.setdefault(family.name, {})
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_every_process_serves_metrics_and_counters_move(stack: Stack) -> None:
    stack.start("api", "worker")
    [worker] = wait_until(lambda: stack.services_of("worker"), 15, "the worker registers")
    [api] = stack.services_of("api")
    assert worker["pid"] == stack.services["worker"].pid and worker["info"]["concurrency"] == DEFAULT_CONCURRENCY
    assert api["metrics_url"] == f"{stack.api_url}/metrics"
    targets = stack.http.get(f"{stack.api_url}/api/services/prometheus-targets").json()
    assert {g["labels"]["job"] for g in targets} == {"streamq-api", "streamq-worker"}
    assert worker["metrics_url"].removeprefix("http://").removesuffix("/metrics") in [g["targets"][0] for g in targets]

    before_w, before_a = scrape(worker["metrics_url"]), scrape(api["metrics_url"])
    assert set(before_w) >= WORKER_FAMILIES, WORKER_FAMILIES - set(before_w)
    assert set(before_a) >= API_FAMILIES, API_FAMILIES - set(before_a)
    ids = [stack.submit(type="echo", payload=i, priority=5)["id"] for i in range(10)]
    wait_until(lambda: all(stack.task(i)["status"] == "completed" for i in ids), 15, "10 tasks completed")
    after_w, after_a = scrape(worker["metrics_url"]), scrape(api["metrics_url"])

    finished = (("queue", "default"), ("status", "completed"), ("type", "echo"))
    submitted = (("priority", "5"), ("queue", "default"), ("type", "echo"))
    run = (("queue", "default"), ("type", "echo"))
    wait = (("priority", "5"), ("queue", "default"))
    assert (
        after_w["streamq_tasks_finished_total"][finished]
        - before_w.get("streamq_tasks_finished_total", {}).get(finished, 0)
        == 10
    )
    assert (
        after_a["streamq_tasks_submitted_total"][submitted]
        - before_a.get("streamq_tasks_submitted_total", {}).get(submitted, 0)
        == 10
    )
    assert after_w["streamq_task_run_seconds_count"][run] == 10
    assert after_w["streamq_task_wait_seconds_count"][wait] == 10
    assert after_w["streamq_tasks_in_progress"][(("queue", "default"),)] == 0
    assert after_a["streamq_queue_depth"][(("priority", "5"), ("queue", "default"))] == 0
    # the worker's registration carries its figures
    wait_until(lambda: stack.services_of("worker")[0]["info"]["processed"] == 10, 5, "processed = 10")

    stack.stop("worker")  # a clean stop unregisters at once
    assert stack.services_of("worker") == []
