"""Groups and type limits with real Redis and real worker processes (docs/groups-and-limits.md):
concurrency across workers and a SIGKILL, rates, fairness, type limits, limits changed at runtime, bad
input. Concurrency is read from the handlers' own start/end notes (tests/e2e/handlers_groups.py)."""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamq.shared.keys import KeySchema
from streamq.shared.schedules import Schedules
from streamq.shared.settings import Settings
from streamq.testing import Service
from tests.e2e.processes import wait_logged
from tests.integration.groups_support import most_at_once, notes
from tests.services import StartService

pytestmark = pytest.mark.timeout(240)


async def start_workers(start_service: StartService, runs: Path, n: int = 3, **env: str) -> list[Service]:
    """``n`` worker processes of concurrency 50 running the groups handlers."""
    env = {"STREAMQ_HANDLERS": "tests.e2e.handlers_groups", "STREAMQ_TEST_RUNS": str(runs),
           "STREAMQ_WORKER_CONCURRENCY": "50", **env}  # fmt: skip
    workers = [start_service("streamq.services.worker", f"worker{i}", **env) for i in range(n)]
    for worker in workers:
        await wait_logged(worker, "worker started")
    return workers


async def submit(api: httpx.AsyncClient, tasks: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for i in range(0, len(tasks), 1000):
        reply = await api.post("/api/tasks/batch", json={"tasks": tasks[i : i + 1000]})
        assert reply.status_code == 201, reply.text
        ids += [t["id"] for t in reply.json()["tasks"]]
    return ids


async def until_done(api: httpx.AsyncClient, ids: list[str], timeout: float = 120) -> None:
    """Every task of ``ids`` completed (a deadline only against hanging forever)."""
    async with asyncio.timeout(timeout):
        left = set(ids)
        while left:
            for task_id in list(left)[:200]:
                if (await api.get(f"/api/tasks/{task_id}")).json()["status"] == "completed":
                    left.discard(task_id)
            await asyncio.sleep(0.05)


async def group_row(api: httpx.AsyncClient, group: str) -> dict[str, Any]:
    listed = (await api.get("/api/queues/default/groups")).json()["groups"]
    row: dict[str, Any] = next(g for g in listed if g["group"] == group)
    return row


def task(group: str | None, s: float = 0.0, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "grp_run", "payload": {"g": group or "-", "s": s}, **extra}
    if group is not None:
        out["group"] = group
    return out


async def test_group_concurrency_holds_across_workers(
    api: httpx.AsyncClient, start_service: StartService, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    await start_workers(start_service, runs)
    assert (await api.put("/api/queues/default/groups/acct-1", json={"concurrency": 2})).status_code == 200
    ids = await submit(api, [task("acct-1", 0.05) for _ in range(40)] + [task("acct-2", 0.05) for _ in range(40)])
    await until_done(api, ids)
    assert most_at_once(str(runs), "acct-1") == 2  # reached, never passed
    assert most_at_once(str(runs), "acct-2") > 2  # no limit of its own, none by default
    listed = (await api.get("/api/queues/default/groups")).json()
    row = next(g for g in listed["groups"] if g["group"] == "acct-1")
    assert row["concurrency"] == 2 and row["pending"] == 0 and row["running"] == 0 and not row["held_back"]


async def started_ms(api: httpx.AsyncClient, ids: list[str]) -> list[int]:
    """The server's start time (ms) of every started task of ``ids``."""
    out = []
    for task_id in ids:
        started = (await api.get(f"/api/tasks/{task_id}")).json()["started_at"]
        if started is not None:
            out.append(int(datetime.fromisoformat(started).timestamp() * 1000))
    return sorted(out)


async def released_ms(redis: Any, keys: KeySchema, ids: list[str]) -> list[int]:
    """When each released task of ``ids`` was released to the workers (ms, Redis clock): the clock its
    group's limits decided on and counted it at (``released_at`` on its hash)."""
    pipe = redis.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(keys.task(task_id), "released_at")
    return sorted(int(m) for m in await pipe.execute() if m)


async def test_group_rate_starts_the_allowed_number_while_others_flow(
    api: httpx.AsyncClient, start_service: StartService, tmp_path: Path, redis: Any, keys: KeySchema
) -> None:
    runs = tmp_path / "runs"
    await start_workers(start_service, runs)
    scheduler = start_service("streamq.services.scheduler")  # wakes a group when its rate allows the next start
    await wait_logged(scheduler, "scheduler started")
    assert (await api.put("/api/queues/default/groups/mailer", json={"rate": {"limit": 20, "per_s": 1}})).is_success
    limited = await submit(api, [task("mailer") for _ in range(400)])
    free = await submit(api, [task(f"t{i % 10}", 0.01) for i in range(300)])
    await until_done(api, free)
    # no worker slot is held by the waiting tasks: every other group's task ran while the limited
    # group had started only its first seconds' worth
    order = notes(str(runs))
    last_free = max(i for i, (kind, _t, g, _p) in enumerate(order) if kind == "E" and g.startswith("t"))
    assert sum(1 for kind, _t, g, _p in order[:last_free] if kind == "S" and g == "mailer") < 100
    async with asyncio.timeout(10):  # listed as held back until its next window (between two windows)
        while not (held := await group_row(api, "mailer"))["held_back"]:
            await asyncio.sleep(0.05)
    assert held["pending"] > 0 and held["next_start_at"] is not None and held["rate"]["limit"] == 20
    async with asyncio.timeout(60):
        while len(starts := await started_ms(api, limited)) < 240:
            await asyncio.sleep(0.5)
    in_ten_s = sum(1 for ms in starts if ms < starts[0] + 10_000)
    assert 200 - 20 <= in_ten_s <= 200 + 20  # 20 a second over 10 s, give or take one window
    # never more than 20 released in any second: the rate's sliding window, on the clock it decided on
    # (not the stream entries' stamps: a loaded host can deschedule Redis between a decision and its
    # XADD, and a whole window's stamps then trail into the next second). Starts follow releases but
    # bunch when the workers fall behind, so they are not the measure either.
    released = await released_ms(redis, keys, limited)
    assert len(released) >= 240
    assert max(sum(1 for ms in released if s <= ms < s + 1000) for s in released) <= 20


async def test_fairness_late_group_waits_at_most_one_round(
    api: httpx.AsyncClient, start_service: StartService, tmp_path: Path, redis: Any, settings: Settings
) -> None:
    runs = tmp_path / "runs"
    workers = await start_workers(start_service, runs)
    a_ids = await submit(api, [task("A") for _ in range(20_000)])
    async with asyncio.timeout(60):  # A is flowing
        while sum(1 for n in notes(str(runs)) if n[0] == "S") < 500:
            await asyncio.sleep(0.05)
    b_ids = await submit(api, [task("B") for _ in range(20)])
    async with asyncio.timeout(60):
        while sum(1 for n in notes(str(runs)) if n[0] == "S" and n[2] == "B") < 20:
            await asyncio.sleep(0.05)
    # Redis's own stamps: B's creation, B's starts, and every A start in between
    keys = KeySchema(settings.key_prefix, "default")
    pipe = redis.pipeline(transaction=False)
    for task_id in a_ids + b_ids:
        pipe.hmget(keys.task(task_id), "created_at", "started_at")
    stamps = [(int(c), int(s) if s else None) for c, s in await pipe.execute()]
    b_created = min(c for c, _s in stamps[len(a_ids) :])
    b_started = max(s for _c, s in stamps[len(a_ids) :] if s is not None)
    a_meanwhile = sum(1 for _c, s in stamps[: len(a_ids)] if s is not None and b_created <= s <= b_started)
    assert a_meanwhile < 2 * (len(workers) * 50), a_meanwhile


async def test_group_unblocked_after_worker_sigkill(
    api: httpx.AsyncClient, start_service: StartService, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    workers = await start_workers(start_service, runs, STREAMQ_LEASE_S="2")
    await api.put("/api/queues/default/groups/sync", json={"concurrency": 2})
    ids = await submit(api, [task("sync", 1.0) for _ in range(8)])
    async with asyncio.timeout(30):
        while not (started := [n for n in notes(str(runs)) if n[0] == "S"]):
            await asyncio.sleep(0.02)
    victim = next(w for w in workers if w.pid == started[0][3])
    victim.signal(signal.SIGKILL)  # its run of a 'sync' task never ends: reclaimed after the lease
    await until_done(api, ids, timeout=120)
    assert most_at_once(str(runs), "sync") == 2
    reran = [n[1] for n in notes(str(runs)) if n[0] == "S"]
    assert len(reran) > len(set(reran))  # the killed run was run again
    row = next(g for g in (await api.get("/api/queues/default/groups")).json()["groups"] if g["group"] == "sync")
    assert row["running"] == 0 and row["pending"] == 0


async def test_type_limit_with_group_limit(api: httpx.AsyncClient, start_service: StartService, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    await start_workers(start_service, runs, n=2)
    assert (await api.put("/api/queues/default/types/grp_run", json={"concurrency": 3})).status_code == 200
    await api.put("/api/queues/default", json={"group_concurrency": 2})
    ids = await submit(api, [task(g, 0.05) for g in ("x", "y", "z") for _ in range(10)] + [task(None, 0.05)] * 10)
    await until_done(api, ids)
    everyone = [n for n in notes(str(runs))]
    running: set[str] = set()
    most = 0
    for kind, task_id, _g, _pid in everyone:
        (running.add if kind == "S" else running.discard)(task_id)
        most = max(most, len(running))
    assert most == 3  # the type's limit over every group and the ungrouped tasks
    assert all(most_at_once(str(runs), g) <= 2 for g in ("x", "y", "z"))
    types = (await api.get("/api/queues/default/types")).json()
    assert types == [{"type": "grp_run", "concurrency": 3, "rate": None, "running": 0}]
    assert (await api.get("/api/queues/default")).json()["group_concurrency"] == 2
    assert (await api.delete("/api/queues/default/types/grp_run")).status_code == 204
    assert (await api.delete("/api/queues/default/types/grp_run")).status_code == 404


async def test_raising_a_limit_frees_held_tasks_at_once(
    api: httpx.AsyncClient, start_service: StartService, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    await start_workers(start_service, runs, n=1)
    await api.put("/api/queues/default/groups/slow", json={"rate": {"limit": 1, "per_s": 3600}})
    ids = await submit(api, [task("slow") for _ in range(5)])
    async with asyncio.timeout(30):
        while len([n for n in notes(str(runs)) if n[0] == "E"]) < 1:
            await asyncio.sleep(0.02)
    assert (await api.get(f"/api/tasks/{ids[1]}")).json()["status"] == "pending"
    text = (await api.get("/metrics")).text
    assert 'streamq_group_waiting_tasks{queue="default"} 4.0' in text
    assert 'streamq_group_waiting_groups{queue="default"} 1.0' in text
    assert 'streamq_limit_held_groups{queue="default"} 1.0' in text
    await api.put("/api/queues/default/groups/slow", json={"concurrency": 5})  # no rate of its own any more
    await until_done(api, ids, timeout=30)  # no scheduler runs here: the change itself released them
    assert 'streamq_group_waiting_tasks{queue="default"} 0.0' in (await api.get("/metrics")).text
    assert (await api.delete("/api/queues/default/groups/slow")).status_code == 204
    assert (await api.delete("/api/queues/default/groups/slow")).status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/api/queues/default/groups/g1", {"concurrency": 2, "burst": 3}, ["body", "burst"]),
        ("/api/queues/default/groups/g1", {"concurrency": -1}, ["body", "concurrency"]),
        ("/api/queues/default/groups/g1", {"rate": {"limit": 0, "per_s": 1}}, ["body", "rate", "limit"]),
        ("/api/queues/default/groups/g1", {"rate": {"limit": 5, "per_s": 0}}, ["body", "rate", "per_s"]),
        ("/api/queues/default/groups/" + "g" * 129, {"concurrency": 1}, ["path", "group"]),  # 10,000: 414
        ("/api/queues/default/types/email", {"concurrency": 0}, ["body", "concurrency"]),
        ("/api/queues/default/types/email", {}, ["body"]),
        ("/api/queues/default", {"group_concurrency": -2}, ["body", "group_concurrency"]),
        ("/api/queues/default", {"group_rate": {"limit": 1, "per_s": -1}}, ["body", "group_rate", "per_s"]),
    ],
)
async def test_bad_limits_are_422_naming_the_field(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], loc: list[str]
) -> None:
    reply = await api.put(path, json=body)
    assert reply.status_code == 422, reply.text
    assert [e["loc"] for e in reply.json()["detail"]] == [loc]


async def test_bad_group_on_a_task_is_422_naming_it(api: httpx.AsyncClient) -> None:
    for group in ("g" * 10_000, "has space", "", 5):
        reply = await api.post("/api/tasks", json={"type": "echo", "group": group})
        assert reply.status_code == 422, reply.text
        assert [e["loc"] for e in reply.json()["detail"]] == [["body", "group"]]
    batch = await api.post("/api/tasks/batch", json={"tasks": [{"type": "echo"}, {"type": "echo", "group": "x y"}]})
    assert batch.status_code == 422 and batch.json()["detail"][0]["loc"] == ["body", "tasks", 1, "group"]


async def test_type_limit_holds_over_partitions(
    api: httpx.AsyncClient, start_service: StartService, tmp_path: Path
) -> None:
    """Ungrouped tasks of a limited type share one partition, so the limit holds over the queue."""
    runs = tmp_path / "runs"
    await api.put("/api/queues/wide", json={"partitions": 3})
    assert (await api.put("/api/queues/wide/types/grp_run", json={"concurrency": 2})).is_success
    await start_workers(start_service, runs, n=2, STREAMQ_QUEUES="wide:3,default:1")
    ids = await submit(api, [task(None, 0.05, queue="wide") for _ in range(30)])
    await until_done(api, ids)
    assert most_at_once(str(runs), "-") == 2


async def test_limits_follow_a_queue_that_grows_and_reads_create_no_queue(
    api: httpx.AsyncClient, redis: Any, settings: Settings
) -> None:
    assert (await api.get("/api/queues/nosuch/groups")).status_code == 404
    assert (await api.get("/api/queues/nosuch/types")).status_code == 404
    assert (await api.delete("/api/queues/nosuch/groups/g")).status_code == 404
    assert (await api.get("/api/queues/nosuch")).status_code == 404  # still unknown
    await api.put("/api/queues/grow/groups/g", json={"concurrency": 3})
    await api.put("/api/queues/grow/types/email", json={"rate": {"limit": 10, "per_s": 1}})
    await api.put("/api/queues/grow", json={"partitions": 3, "group_rate": {"limit": 5, "per_s": 2}})
    prefix = (await api.get("/api/queues/grow")).json()
    assert prefix["partitions"] == 3 and prefix["group_rate"] == {"limit": 5, "per_s": 2.0}
    listed = (await api.get("/api/queues/grow/groups")).json()
    assert listed["default"] == {"concurrency": None, "rate": {"limit": 5, "per_s": 2.0}}
    assert listed["groups"][0]["group"] == "g" and listed["groups"][0]["concurrency"] == 3
    assert listed["groups"][0]["rate"] == {"limit": 5, "per_s": 2.0}  # the default's, for the part it leaves out
    types = (await api.get("/api/queues/grow/types")).json()
    assert types == [{"type": "email", "concurrency": None, "rate": {"limit": 10, "per_s": 1.0}, "running": 0}]
    for part in KeySchema(settings.key_prefix, "grow").partitions(3):  # the new partitions got them too
        assert await redis.hget(part.limits_groups, "g") == "3||"
        assert await redis.hget(part.limits_groups, "*") == "|5|2000"
        assert await redis.hget(part.limits_types, "email") == "|10|1000"


async def test_priorities_decide_before_round_robin(
    api: httpx.AsyncClient, start_service: StartService, tmp_path: Path
) -> None:
    """A group whose next task has a higher priority is served before groups of lower ones, even while
    the window of released tasks is full of the others'."""
    runs = tmp_path / "runs"
    await start_workers(start_service, runs, n=1, STREAMQ_WORKER_CONCURRENCY="1")
    await api.post("/api/queues/default/pause")  # nothing starts while both groups are submitted
    low = await submit(api, [task("low", priority=1) for _ in range(300)])  # 100 released, 200 wait
    high = await submit(api, [task("high", priority=5) for _ in range(50)])
    await api.post("/api/queues/default/resume")
    await until_done(api, high)
    order = [n[2] for n in notes(str(runs)) if n[0] == "S"]
    last_high = max(i for i, g in enumerate(order) if g == "high")
    assert order[:last_high].count("low") <= 5, order[: last_high + 1]
    await until_done(api, low)


async def test_grouped_unique_task_is_held_by_both(
    api: httpx.AsyncClient, start_service: StartService, tmp_path: Path, redis: Any, keys: KeySchema
) -> None:
    """A task with a group and a unique key carries both letters in one ``flow`` field: its key refuses a
    second submit while it waits on its group, and it runs under the group's limit; the key is free once it
    ended. Schedules and workflow steps refuse ``group`` (their tasks are created outside admission)."""
    runs = tmp_path / "runs"
    await start_workers(start_service, runs, n=1)
    assert (await api.put("/api/queues/default/groups/solo", json={"concurrency": 1})).status_code == 200
    first = await submit(api, [task("solo", 1.0)])  # runs while the next one waits on the group
    held = task("solo", 0.0, unique={"key": "sync-solo"})
    reply = await api.post("/api/tasks", json=held)
    assert reply.status_code == 201, reply.text
    unique_id = reply.json()["id"]
    stored = await redis.hgetall(keys.task(unique_id))
    assert stored["flow"] == "gu" and stored["group"] == "solo" and stored["status"] == "pending"
    again = await api.post("/api/tasks", json=held)
    assert again.status_code == 409 and again.json()["task_id"] == unique_id
    await until_done(api, [*first, unique_id])
    assert most_at_once(str(runs), "solo") == 1
    assert (await api.post("/api/tasks", json=held)).status_code == 201  # the key went with its task

    schedule = {"name": "grouped", "every_s": 60, "task": task("solo")}
    refused = await api.post("/api/schedules", json=schedule)
    assert refused.status_code == 422 and "group" in refused.text
    workflow = {"name": "wf", "steps": {"a": task("solo")}}
    refused = await api.post("/api/workflows", json=workflow)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "steps", "a", "group"]


async def test_type_limit_holds_workflow_steps_and_schedule_fires(
    api: httpx.AsyncClient, start_service: StartService, tmp_path: Path, redis: Any, keys: KeySchema
) -> None:
    """Tasks created by a workflow (its root step, then 20 parallel steps released at once by it) and by a
    schedule's firing wait for their type's limit as submitted ones do."""
    runs = tmp_path / "runs"
    await start_workers(start_service, runs, n=2)
    assert (await api.put("/api/queues/default/types/grp_run", json={"concurrency": 1})).status_code == 200
    fan = {f"p{i}": {**task(None, 0.02), "after": ["root"]} for i in range(20)}
    created = await api.post("/api/workflows", json={"name": "fan", "steps": {"root": task(None, 0.02), **fan}})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    async with asyncio.timeout(120):
        while (body := (await api.get(f"/api/workflows/{workflow_id}")).json())["status"] == "running":
            await asyncio.sleep(0.05)
    assert body["status"] == "completed", body
    assert sum(1 for kind, *_ in notes(str(runs)) if kind == "S") == 21
    assert most_at_once(str(runs), "-") == 1
    root = await redis.hgetall(keys.task(body["steps"]["root"]["task_id"]))
    assert root["flow"] == "wg"

    schedule = {"name": "limited", "cron": "* * * * *", "task": task(None)}
    assert (await api.post("/api/schedules", json=schedule)).status_code == 201
    schedules = Schedules(redis, keys)
    [(name, tick)] = await schedules.due(now_ms=2**53)
    fired = await schedules.fire(name, tick, tick)
    assert fired is not None
    assert "g" in (await redis.hget(keys.task(fired), "flow"))  # counted by the type's limit
    await until_done(api, [fired])
