"""Times the api cannot read back are refused at the edge, and a stored record it cannot fully read
(written before that refusal, by hand, or cut short) fails no page, count or route (hardening issue,
item 1: one task scheduled for year 10000 made every unfiltered list answer 500)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from redis.asyncio import Redis

from streamq.shared.keys import KeySchema

# local times whose UTC form is in year 10000 or year 0
UNREADABLE = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00"]
YEAR_10000_MS = 253_402_387_139_000  # what the api stored for the first one before the edge refused it


def _soon() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


async def _task_keys(redis: Redis, prefix: str) -> int:
    return len([k async for k in redis.scan_iter(match=f"{prefix}:{{default}}:*", count=1000)])


@pytest.mark.parametrize("when", UNREADABLE)
async def test_a_time_that_cannot_be_read_back_is_refused_everywhere(
    api: httpx.AsyncClient, redis: Redis, keys: KeySchema, prefix: str, when: str
) -> None:
    bad = {"type": "noop", "scheduled_for": when}
    for path, body, loc in [
        ("/api/tasks", bad, ["body", "scheduled_for"]),  # the fast path
        ("/api/tasks", {**bad, "queue": "other"}, ["body", "scheduled_for"]),  # also the fast path, another queue
        ("/api/tasks/batch", {"tasks": [{"type": "noop"}, bad]}, ["body", "tasks", 1, "scheduled_for"]),
    ]:
        r = await api.post(path, json=body)
        assert r.status_code == 422, r.text
        [error] = r.json()["detail"]
        assert error["loc"] == loc and "once converted to UTC" in error["msg"]
    assert await _task_keys(redis, prefix) == 0

    # a reschedule to such a time is refused before it changes anything
    task = (await api.post("/api/tasks", json={"type": "noop", "scheduled_for": _soon()})).json()
    due = await redis.zscore(keys.scheduled, task["id"])
    before = (await api.get(f"/api/tasks/{task['id']}")).json()
    r = await api.post(f"/api/tasks/{task['id']}/reschedule", json={"scheduled_for": when})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "scheduled_for"]
    assert await redis.zscore(keys.scheduled, task["id"]) == due
    assert (await api.get(f"/api/tasks/{task['id']}")).json() == before


async def test_the_latest_readable_time_is_accepted_and_read_back(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/tasks", json={"type": "noop", "scheduled_for": "9999-12-31T23:59:59.999Z"})
    assert r.status_code == 201 and r.json()["status"] == "scheduled"
    got = await api.get(f"/api/tasks/{r.json()['id']}")
    assert got.status_code == 200 and got.json()["scheduled_for"] == "9999-12-31T23:59:59.999000Z"


async def test_one_unreadable_record_breaks_no_page_count_or_route(
    api: httpx.AsyncClient, redis: Redis, keys: KeySchema
) -> None:
    other = (await api.post("/api/tasks", json={"type": "echo", "payload": 1})).json()
    # what the api stored for 9999-12-31T23:59:59-23:59 before the edge refused it
    poison = (await api.post("/api/tasks", json={"type": "noop", "scheduled_for": _soon()})).json()
    await redis.hset(keys.task(poison["id"]), "scheduled_for", str(YEAR_10000_MS))
    await redis.zadd(keys.scheduled, {poison["id"]: YEAR_10000_MS})
    # and one whose fields the api cannot parse (written by hand or by another version)
    damaged = (await api.post("/api/tasks", json={"type": "noop", "scheduled_for": _soon()})).json()
    await redis.hset(keys.task(damaged["id"]), mapping={"payload": "{", "created_at": "x", "history": "[{}]"})

    for params in [{}, {"type": "noop"}, {"status": "scheduled"}, {"priority": 3}, {"limit": 1}]:
        r = await api.get("/api/tasks", params=params)
        assert r.status_code == 200, (params, r.text)
    listed = {t["id"]: t for t in (await api.get("/api/tasks")).json()["tasks"]}
    assert set(listed) == {other["id"], poison["id"], damaged["id"]}
    assert listed[poison["id"]]["scheduled_for"] == "9999-12-31T23:59:59.999000Z"
    assert listed[poison["id"]]["error"] is None
    assert listed[damaged["id"]]["error"] == "stored record unreadable: payload, created_at, history"
    assert listed[damaged["id"]]["status"] == "scheduled" and listed[damaged["id"]]["type"] == "noop"

    stats = (await api.get("/api/stats")).json()
    assert (stats["total"], stats["scheduled"], stats["pending"]) == (3, 2, 1)
    assert (await api.get(f"/api/tasks/{other['id']}")).status_code == 200

    # each route of the bad records answers, and a state change answers with what it applied
    for task in (poison, damaged):
        assert (await api.get(f"/api/tasks/{task['id']}")).status_code == 200
        cancelled = await api.post(f"/api/tasks/{task['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert (await api.post(f"/api/tasks/{task['id']}/retry")).json()["status"] == "pending"
        assert (await api.post(f"/api/tasks/{task['id']}/cancel")).status_code == 200
        assert (await api.delete(f"/api/tasks/{task['id']}")).status_code == 204
        assert (await api.get(f"/api/tasks/{task['id']}")).status_code == 404
    assert [t["id"] for t in (await api.get("/api/tasks")).json()["tasks"]] == [other["id"]]
