"""The dashboard as a real process: history that survives a restart and stays bounded, live events
over SSE, the api pass-through, and what it says when the api is down."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streamq.testing import RedisServer, Stack, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(redis_server: RedisServer, log_dir: Path) -> Iterator[Stack]:
    stack = Stack(redis_server, log_dir, STREAMQ_HISTORY_INTERVAL_S="0.5", STREAMQ_HISTORY_RETENTION_S="600")
    yield stack
    stack.close()


def history(stack: Stack) -> dict[str, object]:
    return stack.http.get(f"{stack.dashboard_url}/dash/history", params={"range_s": 300}).json()  # type: ignore[no-any-return]


def test_history_is_sampled_and_survives_a_restart(stack: Stack) -> None:
    stack.start("api", "worker", "dashboard")
    # a rate is the change between two samples: the first must be taken before the tasks run (the
    # sampler's first tick can miss the api while it starts; the next comes 2 s later, by which time
    # the worker may have finished all 20, and every later sample would show a rate of 0)
    wait_until(lambda: history(stack)["points"], 15, "the sampler's first sample")
    ids = [stack.submit(type="sleep", payload=0.05, priority=1 + i % 5)["id"] for i in range(20)]
    wait_until(lambda: all(stack.task(i)["status"] == "completed" for i in ids), 15, "20 completed")

    def rated() -> list[dict[str, object]]:
        points = history(stack)["points"]
        assert isinstance(points, list)
        return [p for p in points if p["completed_rate"] and p["run_p50"] is not None] and points

    points = wait_until(rated, 15, "a sample with a completion rate and run time")
    assert history(stack)["source"] == "redis"
    assert set(points[-1]["depth"]) == {"1", "2", "3", "4", "5"}
    print(f"\npeak throughput seen by the sampler: {max(p['completed_rate'] or 0 for p in points):.1f} tasks/s")

    stack.stop("dashboard")
    stack.start("dashboard")  # history lives in Redis: the new process shows the old points at once
    again = history(stack)["points"]
    assert isinstance(again, list)
    assert [p["t"] for p in again[: len(points)]] == [p["t"] for p in points]


def test_events_are_pushed_over_sse(stack: Stack) -> None:
    stack.start("api", "dashboard")
    seen: list[dict[str, str]] = []
    with httpx.Client(timeout=10) as client, client.stream("GET", f"{stack.dashboard_url}/dash/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == "retry: 1000"
        assert next(lines) == "event: hello"
        started = time.monotonic()
        task = stack.submit(type="echo", payload="sse")  # no worker: it stays pending
        for line in lines:
            if line.startswith("data: "):
                seen += json.loads(line[6:])
                if any(e.get("task") == task["id"] for e in seen):
                    break
        print(f"\nsubmit -> event received over SSE: {time.monotonic() - started:.3f} s")
    [event] = [e for e in seen if e.get("task") == task["id"]]
    assert (event["event"], event["status"]) == ("created", "pending")


def test_pass_through_and_api_down(stack: Stack) -> None:
    stack.start("api", "dashboard")
    base = stack.dashboard_url
    bad = stack.http.post(f"{base}/api/tasks", json={"type": "echo", "priority": 9})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "priority"]
    made = stack.http.post(f"{base}/api/tasks", json={"type": "echo"}, headers={"Idempotency-Key": "k1"})
    again = stack.http.post(f"{base}/api/tasks", json={"type": "echo"}, headers={"Idempotency-Key": "k1"})
    assert (made.status_code, again.status_code, again.json()["id"]) == (201, 200, made.json()["id"])
    page = stack.http.get(f"{base}/api/tasks", params={"status": "pending", "limit": 1}).json()
    assert [t["id"] for t in page["tasks"]] == [made.json()["id"]]
    assert stack.http.get(f"{base}/").text.startswith("<!doctype html>")
    assert stack.http.get(f"{base}/static/vendor/uplot/LICENSE").text.startswith("The MIT License")

    stack.stop("api")
    down = stack.http.get(f"{base}/api/stats")
    assert down.status_code == 502
    assert f"the api at {stack.api_url} did not answer" in down.json()["detail"]
