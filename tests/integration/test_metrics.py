"""The api's /metrics (scrape-time queue figures) and the service registry, on a real Redis."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.registry import ServiceRegistration, live_services, prometheus_targets
from streamq.shared.settings import Settings

API_FAMILIES = {
    "streamq_tasks_submitted",
    "streamq_tasks_finished",
    "streamq_task_retries",
    "streamq_tasks_dead_lettered",
    "streamq_tasks_reclaimed",
    "streamq_task_run_seconds",
    "streamq_task_wait_seconds",
    "streamq_tasks_in_progress",
    "streamq_queue_depth",
    "streamq_scheduled_tasks",
    "streamq_queue_paused",
    "streamq_scheduler_lateness_seconds",
    "streamq_webhook_deliveries",
    "streamq_webhook_delivery_seconds",
    "streamq_http_requests",
    "streamq_http_request_seconds",
}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one sample name, keyed by their sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_api_metrics_parse_and_have_every_family(api: httpx.AsyncClient) -> None:
    await api.get("/api/stats")
    response = await api.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert names >= API_FAMILIES, API_FAMILIES - names
    http = samples(response.text, "streamq_http_requests_total")
    assert http[(("method", "GET"), ("route", "/api/stats"), ("status", "200"))] >= 1


async def test_queue_depth_and_scheduled_are_read_at_scrape_time(api: httpx.AsyncClient, settings: Settings) -> None:
    body = {"tasks": [{"type": "noop", "priority": 5}] * 3 + [{"type": "noop", "priority": 1}]}
    body["tasks"].append({"type": "noop", "scheduled_for": "2099-01-01T00:00:00Z"})
    assert (await api.post("/api/tasks/batch", json=body)).status_code == 201
    text = (await api.get("/metrics")).text
    depth = samples(text, "streamq_queue_depth")
    q = ("queue", settings.queue)
    assert depth[(("priority", "5"), q)] == 3
    assert depth[(("priority", "1"), q)] == 1
    assert depth[(("priority", "3"), q)] == 0
    assert samples(text, "streamq_scheduled_tasks") == {(q,): 1}


async def test_submitted_counter_moves(api: httpx.AsyncClient, settings: Settings) -> None:
    key = (("priority", "4"), ("queue", settings.queue), ("type", "echo"))
    before = samples((await api.get("/metrics")).text, "streamq_tasks_submitted_total").get(key, 0.0)
    body = {"tasks": [{"type": "echo", "payload": i, "priority": 4} for i in range(10)]}
    assert (await api.post("/api/tasks/batch", json=body)).status_code == 201
    after = samples((await api.get("/metrics")).text, "streamq_tasks_submitted_total")[key]
    assert after - before == 10


async def test_registry_lists_expires_and_unregisters(redis: Redis, keys: KeySchema) -> None:
    one = ServiceRegistration(
        redis, keys, kind="scheduler", metrics_url="http://10.0.0.7:9100/metrics", heartbeat_s=0.5,
        info=lambda: {"promoted": 7},
    )  # fmt: skip
    await one.tick()
    [found] = await live_services(redis, keys)
    assert (found.kind, found.metrics_url, found.info) == ("scheduler", "http://10.0.0.7:9100/metrics", {"promoted": 7})
    assert 0 < await redis.ttl(keys.service(one.service_id)) <= one.ttl_s
    [group] = prometheus_targets([found])
    assert group["targets"] == ["10.0.0.7:9100"]
    assert group["labels"] == {
        "job": "streamq-scheduler", "__metrics_path__": "/metrics", "__scheme__": "http",
        "streamq_kind": "scheduler", "streamq_id": one.service_id, "streamq_queue": keys.queue,
    }  # fmt: skip
    # a process that dies without unregistering disappears once its TTL passes
    await redis.pexpire(keys.service(one.service_id), 50)
    await asyncio.sleep(0.1)
    assert await live_services(redis, keys) == []
    # start/stop: registered by the first tick, removed by stop
    two = ServiceRegistration(redis, keys, kind="notifier", metrics_url="http://h:1/metrics", heartbeat_s=0.5)
    two.start()
    for _ in range(100):
        if await live_services(redis, keys):
            break
        await asyncio.sleep(0.01)
    assert [s.kind for s in await live_services(redis, keys)] == ["notifier"]
    await two.stop()
    assert await live_services(redis, keys) == []
    assert two.service_id not in await redis.zrange(keys.services, 0, -1)


async def test_api_registers_itself(api: httpx.AsyncClient, settings: Settings) -> None:
    services = (await api.get("/api/services")).json()
    for _ in range(100):  # the registration's first write runs in the background (slower on a cluster)
        if services:
            break
        await asyncio.sleep(0.05)
        services = (await api.get("/api/services")).json()
    assert [s["kind"] for s in services] == ["api"]
    assert services[0]["metrics_url"] == f"http://127.0.0.1:{settings.api_port}/metrics"
    targets = (await api.get("/api/services/prometheus-targets")).json()
    assert targets[0]["targets"] == [f"127.0.0.1:{settings.api_port}"]
    assert targets[0]["labels"]["job"] == "streamq-api"


async def test_worker_in_process_registers_with_its_figures(settings: Settings, queue: Queue, redis: Redis) -> None:
    from tests.integration.helpers import running_worker, wait_for_status

    [done] = await queue.submit([TaskCreate(type="echo", payload=1)])
    async with running_worker(settings) as worker:
        await wait_for_status(queue, done.task.id, {"completed"})
        await asyncio.sleep(settings.heartbeat_s * 1.5)
        [service] = [s for s in await live_services(redis, queue.keys) if s.kind == "worker"]
        assert service.id == worker.worker_id
        assert service.info == {"concurrency": settings.worker_concurrency, "in_flight": 0, "processed": 1}
    assert await live_services(redis, queue.keys) == []
