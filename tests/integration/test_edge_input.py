"""Hostile and careless input at the api's edge (issue 19): each refusal is a 4xx naming the field and
the rule, and writes nothing; ``POST /api/tasks`` is tried on its fast path (services/api/fastpath.py)
and on the FastAPI route alike."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from streamq.services.api.app import create_app
from streamq.shared.settings import Settings

JSON = {"content-type": "application/json"}


@pytest.fixture(params=[True, False], ids=["fast", "route"])
async def client(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, fast_submit=request.param)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            yield c


async def queue_keys(redis: Redis, prefix: str) -> int:
    """Keys of any queue (the api's own service registration lives outside every queue's tag)."""
    return len([k async for k in redis.scan_iter(match=f"{prefix}:{{*}}:*", count=1000)])


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def post(client: httpx.AsyncClient, path: str, body: str) -> httpx.Response:
    return await client.post(path, content=body.encode("utf-8", "surrogatepass"), headers=JSON)


# --- item 5: nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/tasks", '{"type":"noop","payload":' + nested(900) + "}"),
        ("/api/tasks", '{"type":"noop","payload":' + nested(5000) + "}"),
        ("/api/tasks/batch", '{"tasks":[{"type":"noop","payload":' + nested(900) + "}]}"),
        ("/api/schedules", '{"name":"deep","cron":"* * * * *","task":{"type":"noop"},"x":' + nested(900) + "}"),
    ],
    ids=["900", "5000", "batch", "schedule"],
)
async def test_a_body_nested_past_100_levels_is_422_before_parsing(
    client: httpx.AsyncClient, redis: Redis, prefix: str, path: str, body: str
) -> None:
    r = await post(client, path, body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [
        {"loc": ["body"], "msg": "JSON nested deeper than 100 levels of arrays and objects", "type": "json_too_deep"}
    ]
    assert await queue_keys(redis, prefix) == 0


async def test_a_payload_past_64_levels_is_422_naming_it(client: httpx.AsyncClient, redis: Redis, prefix: str) -> None:
    assert (await post(client, "/api/tasks", '{"type":"echo","payload":' + nested(64) + "}")).status_code == 201
    written = await queue_keys(redis, prefix)
    r = await post(client, "/api/tasks", '{"type":"echo","payload":' + nested(65) + "}")
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "payload"] and "deeper than 64 levels" in error["msg"]
    r = await post(
        client, "/api/tasks/batch", '{"tasks":[{"type":"noop"},{"type":"noop","payload":' + nested(90) + "}]}"
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tasks", 1, "payload"]
    r = await post(
        client, "/api/schedules", '{"name":"d","cron":"* * * * *","task":{"type":"noop","payload":' + nested(70) + "}}"
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "task", "payload"]
    assert await queue_keys(redis, prefix) == written


# --- item 6 and the bounded echo: the 422 body itself ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc", "refused"),
    [
        ('{"type":"noop","priority":"\\ud800"}', ["body", "priority"], "\ud800"),
        ('{"type":"noop","\\udfff":1}', ["body"], "\udfff"),  # a field name pydantic cannot read
        ('{"type":"email","payload":{"to":"\\ud83d@example.com"}}', ["body", "payload"], {"to": "\ud83d@example.com"}),
    ],
    ids=["value", "name", "payload"],
)
async def test_a_lone_surrogate_in_a_refused_field_comes_back_escaped(
    client: httpx.AsyncClient, redis: Redis, prefix: str, body: str, loc: list[object], refused: object
) -> None:
    r = await post(client, "/api/tasks", body)
    assert r.status_code == 422, r.text
    r.content.decode("utf-8")  # the body is UTF-8: the surrogate is written as its \uXXXX escape
    [error] = json.loads(r.content)["detail"]
    assert error["loc"] == loc and error["input"] == refused
    assert await queue_keys(redis, prefix) == 0


async def test_a_422_echoes_at_most_256_characters_of_the_input(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/tasks", json={"type": "noop", "priority": "x" * 900_000})
    assert r.status_code == 422 and len(r.content) < 1000
    assert r.json()["detail"][0]["input"] == "x" * 256 + "…"
    extra = {"k": ["y" * 1000], "n": 1}
    r = await client.post("/api/tasks", json={"type": "noop", "extra": extra})
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "extra"] and error["input"] == ('{"k":["' + "y" * 1000)[:256] + "…"
    r = await client.post("/api/tasks", json={"type": "noop", "extra": {"a": [1, None]}, "priority": "high"})
    assert [e["input"] for e in r.json()["detail"]] == ["high", {"a": [1, None]}]  # short inputs as sent


# --- the Idempotency-Key header and the body's idempotency_key ------------------------------------


async def test_idempotency_header_and_field_must_agree(client: httpx.AsyncClient, redis: Redis, prefix: str) -> None:
    r = await client.post(
        "/api/tasks", json={"type": "noop", "idempotency_key": "k-body"}, headers={"Idempotency-Key": "k-head"}
    )
    assert r.status_code == 422
    assert [(e["loc"], e["input"]) for e in r.json()["detail"]] == [
        (["header", "idempotency-key"], "k-head"),
        (["body", "idempotency_key"], "k-body"),
    ]
    assert await queue_keys(redis, prefix) == 0
    both = await client.post(
        "/api/tasks", json={"type": "noop", "idempotency_key": "k-1"}, headers={"Idempotency-Key": "k-1"}
    )
    assert both.status_code == 201 and both.json()["idempotency_key"] == "k-1"
    header = await client.post("/api/tasks", json={"type": "noop"}, headers={"Idempotency-Key": "k-1"})
    field = await client.post("/api/tasks", json={"type": "noop", "idempotency_key": "k-1"})
    assert header.status_code == field.status_code == 200
    assert header.json()["id"] == field.json()["id"] == both.json()["id"]


# --- items 10 and 11: email payloads --------------------------------------------------------------


@pytest.mark.parametrize("brk", ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1e", "\x00"])
async def test_email_subject_and_header_line_breaks_are_422(
    client: httpx.AsyncClient, redis: Redis, prefix: str, brk: str
) -> None:
    payload = {"to": "a@example.com", "subject": f"a{brk}Bcc: victim@example.org"}
    r = await client.post("/api/tasks", json={"type": "email", "payload": payload})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "payload", "subject"]
    payload = {"to": "a@example.com", "headers": {"X-Note": f"a{brk}b"}}
    r = await client.post("/api/tasks", json={"type": "email", "payload": payload})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "payload", "headers", "X-Note"]
    assert await queue_keys(redis, prefix) == 0


@pytest.mark.parametrize(
    "to",
    [
        "a@example.com, victim@example.org",
        "a@example.com;victim@example.org",
        "<a@example.com>victim@example.org",
        "Ann <a@example.com> <victim@example.org>",
        '"victim@example.org" <a@example.com>',
        "a@example.com (victim@example.org)",
    ],
)
async def test_one_address_per_recipient_item(client: httpx.AsyncClient, redis: Redis, prefix: str, to: str) -> None:
    for payload, loc in [
        ({"to": to}, ["body", "payload", "to", 0]),
        ({"to": ["b@example.com", to]}, ["body", "payload", "to", 1]),
        ({"to": "b@example.com", "cc": [to]}, ["body", "payload", "cc", 0]),
        ({"to": "b@example.com", "reply_to": to}, ["body", "payload", "reply_to"]),
        (to, ["body", "payload"]),
    ]:
        r = await client.post("/api/tasks", json={"type": "email", "payload": payload})
        assert r.status_code == 422, (payload, r.text)
        assert r.json()["detail"][0]["loc"] == loc and "not a valid email address" in r.json()["detail"][0]["msg"]
    assert await queue_keys(redis, prefix) == 0


# --- items 7 and 14: schedules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "fragment"),
    [
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 1 1 * 0 2020", "not a valid cron expression"),  # croniter's year field: refused
        ("0 0 1 1 * 0 2030", "not a valid cron expression"),  # fires once, then never again
    ],
)
async def test_a_cron_that_never_fires_is_422(
    client: httpx.AsyncClient, redis: Redis, prefix: str, cron: str, fragment: str
) -> None:
    r = await client.post("/api/schedules", json={"name": "never", "cron": cron, "task": {"type": "noop"}})
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "cron"] and fragment in error["msg"]
    assert await queue_keys(redis, prefix) == 0
    leap = await client.post("/api/schedules", json={"name": "leap", "cron": "0 0 29 2 *", "task": {"type": "noop"}})
    assert leap.status_code == 201  # fires every fourth year


@pytest.mark.parametrize(
    ("task", "loc"),
    [
        ({"type": "noop", "webhook": "http://169.254.169.254/"}, ["body", "task", "webhook"]),
        ({"type": "http", "payload": {"url": "http://127.0.0.1:9/"}}, ["body", "task", "payload", "url"]),
        (
            {"type": "email", "payload": {"to": "a@example.com, victim@example.org"}},
            ["body", "task", "payload", "to", 0],
        ),
    ],
    ids=["webhook", "http", "email"],
)
async def test_a_schedules_task_passes_the_checks_a_submitted_task_does(
    client: httpx.AsyncClient, redis: Redis, prefix: str, task: dict[str, object], loc: list[object]
) -> None:
    submitted = await client.post("/api/tasks", json=task)
    scheduled = await client.post("/api/schedules", json={"name": "s", "cron": "* * * * *", "task": task})
    assert submitted.status_code == scheduled.status_code == 422
    assert scheduled.json()["detail"][0]["loc"] == loc
    assert scheduled.json()["detail"][0]["msg"] == submitted.json()["detail"][0]["msg"]
    assert (await client.get("/api/schedules")).json() == []
    assert await queue_keys(redis, prefix) == 0
