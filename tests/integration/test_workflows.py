"""Workflows against a real Redis and an in-process worker: release order, ctx.parents, failure paths
(skip exactly the descendants, on_failure once, retry re-runs only what did not complete), cancel,
validation (nothing written), idempotency. Runs in the cluster pass too (Makefile CLUSTER_TESTS)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from streamq.services.worker.registry import Registry, TaskContext
from streamq.shared.broker import Broker
from streamq.shared.errors import Permanent
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate, TaskStatus
from streamq.shared.settings import Settings
from streamq.shared.workflows import StepCreate, WorkflowCreate, Workflows
from tests.integration.helpers import running_worker
from tests.integration.scheduling import running_scheduler

Log = list[tuple[str, str, Any]]  # (event, step, detail), in the order they happened (one event loop)


def make_registry(log: Log, failing: set[str]) -> Registry:
    registry = Registry()

    async def step(payload: Any, ctx: TaskContext) -> Any:
        name = payload["step"]
        log.append(("start", name, dict(ctx.parents)))
        await asyncio.sleep(payload.get("sleep", 0.01))
        if name in failing:
            log.append(("fail", name, None))
            raise Permanent(f"{name} broke")
        log.append(("end", name, None))
        return {"step": name}

    async def cleanup(payload: Any, ctx: TaskContext) -> str:
        log.append(("on_failure", "on_failure", dict(ctx.parents)))
        return "cleaned"

    registry.register("wf_step", step)
    registry.register("wf_cleanup", cleanup)
    return registry


def steps(spec: dict[str, list[str]], **extra: Any) -> dict[str, Any]:
    return {name: {"type": "wf_step", "payload": {"step": name, **extra}, "after": after,
                   "max_retries": 0} for name, after in spec.items()}  # fmt: skip


async def wait_workflow(api: httpx.AsyncClient, workflow_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = (await api.get(f"/api/workflows/{workflow_id}")).json()
        if body["status"] != "running":
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"workflow {workflow_id} still running: {body}")
        await asyncio.sleep(0.05)


def assert_order(log: Log, spec: dict[str, list[str]]) -> None:
    """Every step started after each of its parents ended, and once."""
    ended = {name: i for i, (event, name, _) in enumerate(log) if event == "end"}
    starts = [(i, name) for i, (event, name, _) in enumerate(log) if event == "start"]
    assert Counter(name for _, name in starts) == Counter({name: 1 for name in spec}), starts
    for i, name in starts:
        for parent in spec[name]:
            assert parent in ended and ended[parent] < i, (name, parent, log)


DIAMOND = {"extract": [], "a": ["extract"], "b": ["extract"], "load": ["a", "b"]}


async def test_diamond_runs_in_order_with_parents_results(settings: Settings, api: httpx.AsyncClient) -> None:
    log: Log = []
    async with running_worker(settings, make_registry(log, set())):
        created = await api.post("/api/workflows", json={"name": "nightly", "steps": steps(DIAMOND)})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["status"] == "running" and set(body["steps"]) == set(DIAMOND)
        assert body["steps"]["extract"]["status"] in ("pending", "processing", "completed")
        assert body["steps"]["load"]["after"] == ["a", "b"]
        done = await wait_workflow(api, body["id"])
    assert done["status"] == "completed", done
    assert all(s["status"] == "completed" for s in done["steps"].values())
    assert done["steps"]["load"]["result"] == {"step": "load"}
    assert_order(log, DIAMOND)
    parents = {name: detail for event, name, detail in log if event == "start"}
    assert parents["extract"] == {}
    assert parents["a"] == {"extract": {"step": "extract"}}
    assert parents["load"] == {"a": {"step": "a"}, "b": {"step": "b"}}
    task = (await api.get(f"/api/tasks/{done['steps']['a']['task_id']}")).json()
    assert task["workflow"] == body["id"] and task["step"] == "a"
    listed = (await api.get("/api/workflows", params={"status": "completed", "name": "nightly"})).json()
    assert [w["id"] for w in listed["workflows"]] == [body["id"]]
    assert (await api.get("/api/workflows", params={"name": "other"})).json()["workflows"] == []


FAILING = {"a": [], "b": ["a"], "c": ["b"], "e": ["c", "d"], "d": ["a"], "f": ["d"]}


async def test_failing_middle_step_skips_exactly_its_descendants_then_retry(
    settings: Settings, api: httpx.AsyncClient
) -> None:
    log: Log = []
    failing = {"b"}
    async with running_worker(settings, make_registry(log, failing)):
        created = await api.post(
            "/api/workflows",
            json={"name": "etl", "steps": steps(FAILING), "on_failure": {"type": "wf_cleanup", "max_retries": 0}},
        )
        assert created.status_code == 201, created.text
        workflow_id = created.json()["id"]
        done = await wait_workflow(api, workflow_id)
        assert done["status"] == "failed", done
        status = {name: s["status"] for name, s in done["steps"].items()}
        assert status == {"a": "completed", "b": "failed", "c": "skipped", "e": "skipped", "d": "completed",
                          "f": "completed"}  # fmt: skip
        assert done["steps"]["b"]["error"] and "b broke" in done["steps"]["b"]["error"]
        for _ in range(100):  # on_failure is queued by the script that ended the workflow
            if any(event == "on_failure" for event, _, _ in log):
                break
            await asyncio.sleep(0.05)
        cleanups = [detail for event, _, detail in log if event == "on_failure"]
        assert len(cleanups) == 1
        assert cleanups[0]["b"]["status"] == "failed" and "b broke" in cleanups[0]["b"]["error"]
        assert set(cleanups[0]) == {"b"}
        conflict = await api.post(f"/api/workflows/{workflow_id}/cancel")
        assert conflict.status_code == 409

        failing.clear()
        before = Counter(name for event, name, _ in log if event == "start")
        retried = await api.post(f"/api/workflows/{workflow_id}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "running"
        done = await wait_workflow(api, workflow_id)
    assert done["status"] == "completed", done
    after = Counter(name for event, name, _ in log if event == "start") - before
    assert after == Counter({"b": 1, "c": 1, "e": 1})  # only what did not complete ran again
    assert sum(1 for event, _, _ in log if event == "on_failure") == 1
    assert done["on_failure"]["status"] in ("waiting", "skipped")


async def test_cancel_skips_waiting_and_ends_cancelled(settings: Settings, api: httpx.AsyncClient) -> None:
    log: Log = []
    async with running_worker(settings, make_registry(log, set())):
        spec = {"slow": [], "next": ["slow"], "last": ["next"]}
        created = await api.post("/api/workflows", json={"name": "c", "steps": steps(spec, sleep=30)})
        workflow_id = created.json()["id"]
        for _ in range(200):
            if any(event == "start" for event, _, _ in log):
                break
            await asyncio.sleep(0.05)
        answer = await api.post(f"/api/workflows/{workflow_id}/cancel")
        assert answer.status_code == 200, answer.text
        done = await wait_workflow(api, workflow_id)
    assert done["status"] == "cancelled"
    assert {n: s["status"] for n, s in done["steps"].items()} == {"slow": "cancelled", "next": "skipped",
                                                                  "last": "skipped"}  # fmt: skip
    assert [name for event, name, _ in log if event == "start"] == ["slow"]


async def test_idempotency_key_returns_the_earlier_workflow(settings: Settings, api: httpx.AsyncClient) -> None:
    async with running_worker(settings, make_registry([], set())):
        body = {"name": "once", "steps": steps({"x": []})}
        first = await api.post("/api/workflows", json=body, headers={"Idempotency-Key": "k1"})
        again = await api.post("/api/workflows", json=body, headers={"Idempotency-Key": "k1"})
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        await wait_workflow(api, first.json()["id"])


WRITTEN = (":wf:", ":task:", ":idx:", ":stream:", ":scheduled", ":events")  # what a submit would write


async def _workflow_keys(redis: Redis, settings: Settings) -> list[str]:
    """The prefix's task and workflow keys (not the services' registrations, which change on their own)."""
    found: list[str] = []
    async for key in redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        if any(part in key for part in WRITTEN):
            found.append(key)
    return sorted(found)


@pytest.mark.parametrize(
    ("spec", "loc_step", "words"),
    [
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, None, "cycle"),
        ({"a": ["a"]}, "a", "after itself"),
        ({"a": [], "b": ["nope"]}, "b", "not a step"),
    ],
)
async def test_bad_graphs_are_refused_and_nothing_is_written(
    settings: Settings, api: httpx.AsyncClient, redis: Redis, spec: dict[str, list[str]], loc_step: str | None,
    words: str,
) -> None:  # fmt: skip
    before = await _workflow_keys(redis, settings)
    answer = await api.post("/api/workflows", json={"name": "bad", "steps": steps(spec)})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert any(words in item["msg"] for item in detail), detail
    if loc_step:
        assert any(item["loc"][:3] == ["body", "steps", loc_step] for item in detail), detail
    if words == "cycle":
        assert any("a -> " in item["msg"] or "b -> " in item["msg"] for item in detail)
    assert await _workflow_keys(redis, settings) == before


async def test_limits_and_unknown_types_are_refused(settings: Settings, api: httpx.AsyncClient, redis: Redis) -> None:
    async with running_worker(settings, make_registry([], set())):
        before = sorted(await _workflow_keys(redis, settings))
        too_many = {f"s{i}": {"type": "wf_step"} for i in range(1001)}
        answer = await api.post("/api/workflows", json={"name": "big", "steps": too_many})
        assert answer.status_code == 422 and "1000" in answer.text
        unknown = await api.post("/api/workflows", json={"name": "u", "steps": {"x": {"type": "no_such_type"}}})
        assert unknown.status_code == 422, unknown.text
        assert unknown.json()["detail"][0]["loc"][:3] == ["body", "steps", "x"]
        other_queue = await api.post(
            "/api/workflows", json={"name": "q", "steps": {"x": {"type": "wf_step", "queue": "elsewhere"}}}
        )
        assert other_queue.status_code == 422 and "workflow's queue" in other_queue.text
        huge = await api.post("/api/workflows", content=b"{" + b" " * (10 * 1024 * 1024) + b"}",
                              headers={"content-type": "application/json"})  # fmt: skip
        assert huge.status_code in (413, 422)
        assert sorted(await _workflow_keys(redis, settings)) == before
        assert (await api.get("/api/workflows/NOPE")).status_code == 404


async def test_steps_live_as_long_as_their_workflow(settings: Settings, redis: Redis) -> None:
    """With a retention of 0 s: a completed step of a running workflow survives the janitor's prune;
    once the workflow ended, one prune removes it with all its steps (skipped ones too)."""
    broker = Broker(redis, KeySchema(settings.key_prefix, settings.queue), result_ttl_s=0)
    flows = Workflows(broker)
    q = broker.default
    log: Log = []
    async with running_worker(settings, make_registry(log, {"boom"})):
        wf = WorkflowCreate(
            name="short",
            steps={
                "first": StepCreate(type="wf_step", payload={"step": "first"}, max_retries=0),
                "slow": StepCreate(type="wf_step", payload={"step": "slow", "sleep": 1.0}, after=["first"]),
                "boom": StepCreate(type="wf_step", payload={"step": "boom"}, after=["slow"], max_retries=0),
                "never": StepCreate(type="wf_step", payload={"step": "never"}, after=["boom"]),
            },
        )
        created, _ = await flows.submit(wf)
        first = created.steps["first"].task_id
        while not any(event == "start" and name == "slow" for event, name, _ in log):
            await asyncio.sleep(0.02)
        await q.prune()
        assert (await q.get(first)).status == "completed"  # kept: its workflow still runs
        while (await flows.get(created.id)).status == "running":
            await asyncio.sleep(0.05)
    ended = await flows.get(created.id)
    assert ended.status == "failed" and ended.steps["never"].status == "skipped"
    removed, _ = await q.prune()
    assert removed == 4
    assert not await redis.exists(q.keys.workflow(created.id))
    for step in ended.steps.values():
        assert not await redis.exists(q.keys.task(step.task_id))
    assert await redis.zcard(q.keys.index_status(TaskStatus.SKIPPED)) == 0
    assert await redis.zcard(q.keys.workflow_index()) == 0
    assert await redis.zcard(q.keys.workflow_index("failed")) == 0


async def test_metrics_count_workflows_and_waiting_steps(settings: Settings, api: httpx.AsyncClient) -> None:
    chain = {"a": {"type": "echo"}, "b": {"type": "echo", "after": ["a"]}, "c": {"type": "echo", "after": ["b"]}}
    created = await api.post("/api/workflows", json={"name": "m", "steps": chain})
    assert created.status_code == 201, created.text
    text = (await api.get("/metrics")).text
    assert 'streamq_workflow_steps_waiting{queue="default"} 2.0' in text
    assert 'streamq_workflows_started_total{queue="default"} 1.0' in text
    async with running_worker(settings):
        await wait_workflow(api, created.json()["id"])
    text = (await api.get("/metrics")).text
    assert 'streamq_workflow_steps_waiting{queue="default"} 0.0' in text
    assert 'streamq_workflows_finished_total{outcome="completed",queue="default"} 1.0' in text


async def test_a_step_s_delay_counts_from_its_release(settings: Settings, api: httpx.AsyncClient) -> None:
    """A released step with delay_s is scheduled, then promoted by the scheduler like any delayed task."""
    log: Log = []
    async with running_worker(settings, make_registry(log, set())), running_scheduler(settings):
        spec = {"a": {"type": "wf_step", "payload": {"step": "a"}},
                "b": {"type": "wf_step", "payload": {"step": "b"}, "after": ["a"], "delay_s": 0.4}}  # fmt: skip
        created = await api.post("/api/workflows", json={"name": "delayed", "steps": spec})
        assert created.status_code == 201, created.text
        workflow_id = created.json()["id"]
        seen: set[str] = set()
        for _ in range(200):
            body = (await api.get(f"/api/workflows/{workflow_id}")).json()
            seen.add(body["steps"]["b"]["status"])
            if body["status"] != "running":
                break
            await asyncio.sleep(0.02)
    assert body["status"] == "completed"
    assert "scheduled" in seen  # released into the scheduled set, not straight onto its stream
    a_done = datetime.fromisoformat(body["steps"]["a"]["completed_at"])
    b_started = datetime.fromisoformat(body["steps"]["b"]["started_at"])
    assert (b_started - a_done).total_seconds() >= 0.4


async def test_a_workflow_s_task_is_retried_and_deleted_only_with_its_workflow(
    settings: Settings, api: httpx.AsyncClient
) -> None:
    """A failed step can be neither retried nor deleted on its own (409 naming the rule): the workflow
    would count it wrong and wait forever. Retrying every failed task passes over it (and still reaches
    the failed tasks behind it), and the workflow's retry runs it and its skipped child to the end."""
    log: Log = []
    failing = {"a", "solo"}
    async with running_worker(settings, make_registry(log, failing)):
        created = await api.post("/api/workflows", json={"name": "hand", "steps": steps({"a": [], "b": ["a"]})})
        assert created.status_code == 201, created.text
        workflow_id = created.json()["id"]
        solo = await api.post("/api/tasks", json={"type": "wf_step", "payload": {"step": "solo"}, "max_retries": 0})
        failed = await wait_workflow(api, workflow_id)
        assert failed["status"] == "failed"
        assert {n: s["status"] for n, s in failed["steps"].items()} == {"a": "failed", "b": "skipped"}
        step_a = failed["steps"]["a"]["task_id"]
        for _ in range(200):
            if (await api.get(f"/api/tasks/{solo.json()['id']}")).json()["status"] == "failed":
                break
            await asyncio.sleep(0.05)
        failing.clear()

        retried = await api.post(f"/api/tasks/{step_a}/retry")
        assert retried.status_code == 409, retried.text
        assert f"retry the workflow: POST /api/workflows/{workflow_id}/retry" in retried.json()["detail"]
        deleted = await api.delete(f"/api/tasks/{step_a}")
        assert deleted.status_code == 409, deleted.text
        assert f"deleted with its workflow {workflow_id}" in deleted.json()["detail"]
        bulk = await api.post("/api/tasks/retry-failed", params={"batch": 1})  # the step first, then solo
        assert bulk.json() == {"revived": 1}
        assert (await api.get(f"/api/tasks/{step_a}")).json()["status"] == "failed"  # untouched

        again = await api.post(f"/api/workflows/{workflow_id}/retry")
        assert again.status_code == 200, again.text
        done = await wait_workflow(api, workflow_id)
    assert done["status"] == "completed", done
    assert {n: s["status"] for n, s in done["steps"].items()} == {"a": "completed", "b": "completed"}


async def test_a_workflow_id_that_names_another_key_is_404(api: httpx.AsyncClient) -> None:
    """Ids that are not task ids are no workflow's, even where they name the partition's other workflow keys
    (wf:idx, wf:retention, wf:idx:running): 404 as for a task, never a Redis type error."""
    created = await api.post("/api/workflows", json={"name": "k", "steps": {"x": {"type": "echo"}}})
    workflow_id = created.json()["id"]
    await api.post(f"/api/workflows/{workflow_id}/cancel")  # ended: wf:retention exists too
    for bad in ("idx", "retention", "idx:running", workflow_id.lower(), workflow_id + "0"):
        assert (await api.get(f"/api/workflows/{bad}")).status_code == 404, bad
        assert (await api.post(f"/api/workflows/{bad}/cancel")).status_code == 404, bad
        assert (await api.post(f"/api/workflows/{bad}/retry")).status_code == 404, bad
    assert (await api.get(f"/api/workflows/{workflow_id}")).json()["status"] == "cancelled"


async def test_prune_keeps_a_workflow_while_its_on_failure_task_waits(settings: Settings, redis: Redis) -> None:
    """With a retention of 0 s: a failed workflow whose on_failure task is still scheduled is kept whole by
    the janitor's prune (its retention pushed on); once that task ended, one prune removes everything."""
    broker = Broker(redis, KeySchema(settings.key_prefix, settings.queue), result_ttl_s=0)
    flows = Workflows(broker)
    q = broker.default
    later = datetime.fromtimestamp(time.time() + 3600).astimezone()
    wf = WorkflowCreate(
        name="late-cleanup",
        steps={"a": StepCreate(type="wf_step", payload={"step": "a"}, max_retries=0)},
        on_failure=TaskCreate(type="wf_cleanup", scheduled_for=later),
    )
    async with running_worker(settings, make_registry([], {"a"})):
        created, _ = await flows.submit(wf)
        while (await flows.get(created.id)).status == "running":
            await asyncio.sleep(0.05)
    ended = await flows.get(created.id)
    assert ended.status == "failed" and ended.on_failure is not None
    cleanup = ended.on_failure.task_id
    assert (await q.get(cleanup)).status == "scheduled"
    await q.prune()
    assert (
        await redis.exists(q.keys.workflow(created.id), q.keys.task(cleanup), q.keys.task(created.steps["a"].task_id))
        == 3
    )
    assert await redis.zscore(q.keys.workflow_retention, created.id) is not None
    await q.cancel(cleanup)
    removed, _ = await q.prune()
    assert removed == 2
    assert not await redis.exists(q.keys.workflow(created.id), q.keys.task(cleanup))
