"""The notifier in-process with a real worker, the api (in-process) and a real HTTP receiver on
loopback: signatures checked with the Standard Webhooks reference library, retries, Retry-After,
410, the delivery log, redeliver, and recovery of what a dead notifier left behind."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from standardwebhooks import Webhook

from streamq.services.api.app import create_app
from streamq.shared.keys import NOTIFIER_GROUP, KeySchema
from streamq.shared.settings import Settings
from streamq.shared.streams import ensure_group
from tests.integration.helpers import running_worker
from tests.integration.receivers import Answer, Receiver, running_notifier, serving, wait_until

SECRET = "whsec_" + base64.b64encode(b"streamq-test-secret-0123456789ab").decode()


def webhook_settings(settings: Settings, **overrides: Any) -> Settings:
    """The suite's settings (tests/conftest.py) plus a secret and a fast webhook schedule."""
    return settings.model_copy(
        update={
            "webhook_secret": SecretStr(SECRET),
            "webhook_schedule": [0, 0.3, 0.3, 0.3],
            "webhook_poll_s": 0.05,
            "webhook_timeout_s": 2,
            "webhook_lease_s": 4,
            "notifier_claim_idle_s": 0.5,
            "allow_private_networks": True,  # the receiver is on loopback
            **overrides,
        }
    )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return webhook_settings(settings)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving(Receiver()) as r:
        yield r


async def submit(api: httpx.AsyncClient, webhook: str, **fields: object) -> str:
    response = await api.post("/api/tasks", json={"type": "echo", "payload": {"n": 1}, "webhook": webhook, **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def task_json(api: httpx.AsyncClient, task_id: str) -> dict[str, object]:
    response = await api.get(f"/api/tasks/{task_id}")
    assert response.status_code == 200
    return dict(response.json())


async def wait_webhook_status(
    api: httpx.AsyncClient, task_id: str, status: str, timeout: float = 10, field: str = "webhook_status"
) -> None:
    """Until the task's ``field`` (its webhook_status by default) is ``status``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (await task_json(api, task_id)).get(field) != status:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{field} is {(await task_json(api, task_id)).get(field)}")
        await asyncio.sleep(0.05)


async def test_completed_task_posts_a_signed_webhook(
    settings: Settings, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    task_id = await submit(api, receiver.url())
    async with running_worker(settings), running_notifier(settings):
        await wait_webhook_status(api, task_id, "delivered")
    [request] = receiver.requests
    completed_at = (await task_json(api, task_id))["completed_at"]
    lag = request.at - datetime.fromisoformat(str(completed_at)).timestamp()
    print(f"\ntask completed -> webhook received: {lag * 1000:.0f} ms (poll interval 50 ms)")
    payload = Webhook(SECRET).verify(request.body, request.headers)  # raises unless the signature is right
    assert payload["type"] == "task.completed"
    assert payload["data"]["id"] == task_id and payload["data"]["result"] == {"n": 1}
    assert payload["data"]["status"] == "completed" and payload["timestamp"].endswith("Z")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"].startswith("msg_")
    log = (await api.get(f"/api/tasks/{task_id}/deliveries")).json()
    assert log["webhook_status"] == "delivered" and log["webhook"] == receiver.url()
    [attempt] = log["deliveries"]
    assert attempt["status_code"] == 200 and attempt["outcome"] == "delivered" and attempt["attempt"] == 1
    assert attempt["webhook_id"] == request.headers["webhook-id"] and attempt["duration_ms"] >= 0
    assert attempt["started_at"] <= attempt["finished_at"] and attempt["error"] is None


async def test_500_twice_then_200_is_delivered_on_the_third_attempt_with_one_webhook_id(
    settings: Settings, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.on("/flaky", Answer(500), Answer(502), Answer(200))
    task_id = await submit(api, receiver.url("/flaky"))
    async with running_worker(settings), running_notifier(settings):
        await wait_webhook_status(api, task_id, "delivered")
    requests = receiver.at("/flaky")
    assert len(requests) == 3
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1  # the same message each time
    for r in requests:
        Webhook(SECRET).verify(r.body, r.headers)
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    print(f"retry gaps (schedule 0.3 s +-10 %): {[round(g, 3) for g in gaps]}")
    assert all(g >= 0.25 for g in gaps)
    log = (await api.get(f"/api/tasks/{task_id}/deliveries")).json()["deliveries"]
    assert [(e["attempt"], e["status_code"], e["outcome"]) for e in log] == [
        (1, 500, "retrying"), (2, 502, "retrying"), (3, 200, "delivered")
    ]  # fmt: skip
    assert log[0]["next_attempt_at"] and log[0]["error"] == "HTTP 500"


async def test_410_stops_after_one_attempt(settings: Settings, api: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.on("/gone", Answer(410))
    task_id = await submit(api, receiver.url("/gone"))
    async with running_worker(settings), running_notifier(settings):
        await wait_webhook_status(api, task_id, "gone")
        await asyncio.sleep(1.0)  # longer than the whole retry schedule
    assert len(receiver.at("/gone")) == 1
    [entry] = (await api.get(f"/api/tasks/{task_id}/deliveries")).json()["deliveries"]
    assert entry["outcome"] == "gone" and "410" in entry["error"]


async def test_other_4xx_fails_without_retry(settings: Settings, api: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.on("/bad", Answer(400))
    task_id = await submit(api, receiver.url("/bad"))
    async with running_worker(settings), running_notifier(settings):
        await wait_webhook_status(api, task_id, "failed")
        await asyncio.sleep(1.0)
    assert len(receiver.at("/bad")) == 1


async def test_retry_after_is_honoured(settings: Settings, api: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.on("/busy", Answer(429, {"retry-after": "2"}), Answer(200))
    task_id = await submit(api, receiver.url("/busy"))
    async with running_worker(settings), running_notifier(settings):
        await wait_webhook_status(api, task_id, "delivered")
    first, second = receiver.at("/busy")
    print(f"Retry-After: 2 -> next attempt after {second.at - first.at:.3f} s (schedule says 0.3 s)")
    assert second.at - first.at >= 1.9


async def test_schedule_runs_out_then_failed(settings: Settings, api: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.on("/down", Answer(503))
    task_id = await submit(api, receiver.url("/down"))
    async with running_worker(settings), running_notifier(settings):
        await wait_webhook_status(api, task_id, "failed")
    assert len(receiver.at("/down")) == len(settings.webhook_schedule)


async def test_failed_and_cancelled_tasks_notify_and_other_events_do_not(
    settings: Settings, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    failing = await submit(api, receiver.url("/f"), type="fail", payload="boom", max_retries=0)
    later = await submit(api, receiver.url("/c"), scheduled_for="2099-01-01T00:00:00Z")
    assert (await api.post(f"/api/tasks/{later}/cancel")).status_code == 200
    plain = (await api.post("/api/tasks", json={"type": "echo"})).json()["id"]
    async with running_worker(settings), running_notifier(settings):
        await wait_webhook_status(api, failing, "delivered")
        await wait_webhook_status(api, later, "delivered")
        await asyncio.sleep(0.5)
    [f] = receiver.at("/f")
    [c] = receiver.at("/c")
    failed, cancelled = Webhook(SECRET).verify(f.body, f.headers), Webhook(SECRET).verify(c.body, c.headers)
    assert failed["type"] == "task.failed" and failed["data"]["error"] == "RuntimeError: boom"
    assert failed["data"]["attempts"] == 1 and failed["data"]["status"] == "failed"
    assert cancelled["type"] == "task.cancelled" and cancelled["data"]["id"] == later
    assert len(receiver.requests) == 2
    assert (await task_json(api, plain))["webhook_status"] is None


async def test_a_running_task_cancelled_posts_one_cancelled_webhook(
    settings: Settings, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    """A cancel of a processing task (202) ends it cancelled with one signed task.cancelled webhook: the
    cancel request and the handler's stop are not deliveries of their own."""
    task_id = await submit(api, receiver.url("/running"), type="sleep", payload=30, max_retries=3)
    async with running_worker(settings), running_notifier(settings):
        await wait_webhook_status(api, task_id, "processing", field="status")
        answer = await api.post(f"/api/tasks/{task_id}/cancel")
        assert answer.status_code == 202 and answer.json()["cancel_requested"] is True
        await wait_webhook_status(api, task_id, "delivered")
        await asyncio.sleep(0.5)  # a second delivery, were there one, would come now
    [hook] = receiver.at("/running")
    message = Webhook(SECRET).verify(hook.body, hook.headers)
    assert message["type"] == "task.cancelled" and message["data"]["id"] == task_id
    assert message["data"]["status"] == "cancelled" and message["data"]["attempts"] == 1
    assert "cancelled while it ran" in message["data"]["error"]
    task = await task_json(api, task_id)
    assert task["status"] == "cancelled" and task["cancel_requested"] is True and task["result"] is None
    assert len(receiver.requests) == 1


async def test_redeliver_resends_the_same_message(
    settings: Settings, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    task_id = await submit(api, receiver.url())
    async with running_worker(settings), running_notifier(settings):
        await wait_webhook_status(api, task_id, "delivered")
        response = await api.post(f"/api/tasks/{task_id}/redeliver")
        assert response.status_code == 202, response.text
        assert response.json()["webhook_status"] == "pending" and not response.json()["new_message"]
        await wait_until(lambda: len(receiver.requests) == 2, what="redelivery")
        await wait_webhook_status(api, task_id, "delivered")
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    Webhook(SECRET).verify(second.body, second.headers)
    log = (await api.get(f"/api/tasks/{task_id}/deliveries")).json()["deliveries"]
    assert [e["attempt"] for e in log] == [1, 2]


async def test_redeliver_and_log_errors(settings: Settings, api: httpx.AsyncClient) -> None:
    plain = (await api.post("/api/tasks", json={"type": "echo"})).json()["id"]
    response = await api.post(f"/api/tasks/{plain}/redeliver")
    assert response.status_code == 409 and "no webhook" in response.json()["detail"]
    waiting = (await api.post("/api/tasks", json={"type": "echo", "webhook": "http://127.0.0.1:9/x"})).json()["id"]
    response = await api.post(f"/api/tasks/{waiting}/redeliver")
    assert response.status_code == 409 and "completed, failed or cancelled" in response.json()["detail"]
    assert (await api.post("/api/tasks/NOPE/redeliver")).status_code == 404
    assert (await api.get("/api/tasks/NOPE/deliveries")).status_code == 404
    empty = (await api.get(f"/api/tasks/{plain}/deliveries")).json()
    assert empty == {"task": plain, "webhook": None, "webhook_status": None, "deliveries": []}


async def test_api_refuses_blocked_webhook_urls_with_the_reason(settings: Settings, redis: Redis) -> None:
    guarded = settings.model_copy(update={"allow_private_networks": False})
    app = create_app(guarded)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            response = await api.post("/api/tasks", json={"type": "echo", "webhook": "http://127.0.0.1:8080/x"})
            assert response.status_code == 422
            [error] = response.json()["detail"]
            assert error["loc"] == ["body", "webhook"] and "loopback" in error["msg"]
            response = await api.post("/api/tasks", json={"type": "echo", "webhook": "http://169.254.169.254/"})
            assert "metadata" in response.json()["detail"][0]["msg"]
            response = await api.post("/api/tasks", json={"type": "echo", "webhook": "https://u:p@example.com/"})
            assert "user info" in response.json()["detail"][0]["msg"]
            batch = {"tasks": [{"type": "echo", "webhook": "https://example.com/ok"},
                               {"type": "echo", "webhook": "http://[::ffff:10.0.0.1]/"}]}  # fmt: skip
            response = await api.post("/api/tasks/batch", json=batch)
            assert response.status_code == 422
            [error] = response.json()["detail"]
            assert error["loc"] == ["body", "tasks", 1, "webhook"] and "10.0.0.1" in error["msg"]
            assert (await api.get("/api/stats")).json()["total"] == 0  # nothing written


async def test_retries_survive_a_notifier_restart(
    settings: Settings, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    slow = settings.model_copy(update={"webhook_schedule": [0, 1.5]})
    receiver.on("/later", Answer(500), Answer(200))
    task_id = await submit(api, receiver.url("/later"))
    async with running_worker(slow):
        async with running_notifier(slow):
            await wait_webhook_status(api, task_id, "retrying")
        assert len(receiver.at("/later")) == 1  # stopped while the retry waits (a due time in Redis)
        async with running_notifier(slow, consumer="another-host"):
            await wait_webhook_status(api, task_id, "delivered")
    assert len(receiver.at("/later")) == 2


async def test_events_left_pending_by_a_dead_notifier_are_reclaimed(
    settings: Settings, api: httpx.AsyncClient, receiver: Receiver, redis: Redis, keys: KeySchema
) -> None:
    await ensure_group(redis, [keys.events], NOTIFIER_GROUP)
    task_id = await submit(api, receiver.url())
    async with running_worker(settings):
        while (await task_json(api, task_id))["status"] != "completed":
            await asyncio.sleep(0.02)
    # a notifier on another host read every event and died before handling them
    read = await redis.xreadgroup(NOTIFIER_GROUP, "dead-host", {keys.events: ">"})
    assert len(read[0][1]) == 3
    async with running_notifier(settings, consumer="alive-host"):
        await wait_webhook_status(api, task_id, "delivered")
    assert len(receiver.requests) == 1
    assert (await redis.xpending(keys.events, NOTIFIER_GROUP))["pending"] == 0


async def test_trimmed_pending_events_are_counted_not_fatal(settings: Settings, redis: Redis, keys: KeySchema) -> None:
    from streamq.services.notifier.events import EventHandler
    from streamq.services.notifier.reclaim import Reclaimer
    from streamq.shared.deliveries import Deliveries
    from streamq.shared.scripts import Scripts

    await ensure_group(redis, [keys.events], NOTIFIER_GROUP)
    for i in range(5):
        await redis.xadd(keys.events, {"event": "completed", "task": f"T{i}", "status": "completed"})
    await redis.xreadgroup(NOTIFIER_GROUP, "dead-host", {keys.events: ">"})
    await redis.xtrim(keys.events, maxlen=0)  # the capped stream dropped them while pending
    deliveries = Deliveries(Scripts(redis), keys, events_maxlen=100, keep_ms=1000)
    handler = EventHandler(redis, keys, deliveries, 0)
    reclaimer = Reclaimer(redis, lambda: [handler], consumer="me", min_idle_s=0.001)
    await asyncio.sleep(0.01)
    assert await reclaimer.sweep() == 0
    assert reclaimer.deleted == {keys.events: 5}
    assert (await redis.xpending(keys.events, NOTIFIER_GROUP))["pending"] == 0


async def test_events_trimmed_before_any_notifier_read_them_are_reported(redis: Redis, keys: KeySchema) -> None:
    from streamq.services.notifier.reader import EventReader

    await ensure_group(redis, [keys.events], NOTIFIER_GROUP)
    reader = EventReader(redis, keys, handler=None, consumer="me")  # type: ignore[arg-type]
    assert await reader.missed() == 0
    for i in range(5):
        await redis.xadd(keys.events, {"event": "created", "task": f"T{i}", "status": "pending"})
    assert await reader.missed() == 0
    await redis.xtrim(keys.events, maxlen=2, approximate=False)
    assert await reader.missed() == 3


async def test_the_event_reader_reads_what_came_during_its_pause_at_once(redis: Redis, keys: KeySchema) -> None:
    """After a read that was not a full batch the next waits ``pace_s``: events of that time are read,
    looked up and acknowledged together instead of one wake-up each; a full batch is followed at once."""
    from streamq.services.notifier.reader import EventReader

    handled: list[int] = []

    class Counting:
        async def handle(self, entries: list[Any]) -> int:
            handled.append(len(entries))
            return 0

    await ensure_group(redis, [keys.events], NOTIFIER_GROUP)
    reader = EventReader(redis, keys, handler=Counting(), consumer="me", pace_s=0.05)  # type: ignore[arg-type]
    reader.block_ms = 50
    await reader.tick()  # nothing: the blocking read times out and the next one follows at once
    assert handled == [] and reader.interval_s == 0
    await redis.xadd(keys.events, {"event": "created", "task": "T0", "status": "pending"})
    await reader.tick()
    assert handled == [1] and reader.interval_s == reader.pace_s
    for i in range(30):  # what came during the pause: one read
        await redis.xadd(keys.events, {"event": "completed", "task": f"T{i}", "status": "completed"})
    await reader.tick()
    assert handled == [1, 30] and reader.interval_s == reader.pace_s
    pipe = redis.pipeline(transaction=False)
    for i in range(reader.batch + 5):
        pipe.xadd(keys.events, {"event": "started", "task": f"B{i}", "status": "processing"})
    await pipe.execute()
    await reader.tick()  # a full batch: the rest is read at once
    assert handled == [1, 30, reader.batch] and reader.interval_s == 0
    await reader.tick()
    assert handled == [1, 30, reader.batch, 5] and reader.interval_s == reader.pace_s


async def test_a_slow_receiver_times_out_and_is_retried(
    settings: Settings, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    quick = settings.model_copy(update={"webhook_timeout_s": 0.5, "webhook_lease_s": 2})
    receiver.on("/slow", Answer(200, delay_s=1.5), Answer(200))
    task_id = await submit(api, receiver.url("/slow"))
    async with running_worker(quick), running_notifier(quick):
        await wait_webhook_status(api, task_id, "delivered")
    first, second = (await api.get(f"/api/tasks/{task_id}/deliveries")).json()["deliveries"]
    assert first["outcome"] == "retrying" and first["error"] == "timed out after 0.5 s"
    assert 450 <= first["duration_ms"] < 1400 and second["outcome"] == "delivered"


@pytest.mark.parametrize(
    ("update", "fragment"),
    [
        ({"webhook_secret": SecretStr("")}, "STREAMQ_WEBHOOK_SECRET"),
        ({"webhook_lease_s": 2.0}, "STREAMQ_WEBHOOK_LEASE_S"),
    ],
)
async def test_the_notifier_refuses_to_start_misconfigured(
    settings: Settings, update: dict[str, object], fragment: str
) -> None:
    from streamq.services.notifier.main import Notifier

    with pytest.raises(SystemExit, match=fragment):
        await Notifier(settings.model_copy(update=update)).run(asyncio.Event())
