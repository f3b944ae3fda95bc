"""Property-based checks of the submission model (hypothesis): whatever it accepts round-trips through
Redis unchanged; whatever it rejects writes nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.security.conftest import ApiFactory

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
wild = st.recursive(  # finite floats: httpx refuses to encode NaN and infinities (raw NaN bodies: test_api)
    json_scalars | st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
bodies = st.fixed_dictionaries(
    {"type": st.sampled_from(["noop", "echo", "sleep"])},
    optional={
        "payload": json_values,
        "priority": st.integers(-2, 8) | st.booleans() | st.text(max_size=2),
        "max_retries": st.integers(-1, 101),
        "timeout_s": st.floats(-1, 1e6) | st.none() | st.just("5"),
        "retry_backoff_s": st.floats(-1, 1e5) | st.none(),
        "scheduled_for": st.sampled_from(["2000-01-01T00:00:00Z", "2999-01-01T00:00:00+02:00", "soon", 0]),
        "webhook": st.sampled_from(["http://127.0.0.1:9/x", "ftp://x", "", "https://[::1]:9/h"]),
        "idempotency_key": st.text(min_size=0, max_size=5),
        "extra": wild,
    },
)

FIELDS = ("type", "priority", "max_retries", "timeout_s", "retry_backoff_s", "idempotency_key")


async def queue_keys(redis: Redis, prefix: str) -> set[str]:
    """Every key of the test's queue with its type and size (the api's own registration lives elsewhere)."""
    keys = set()
    async for key in redis.scan_iter(match=f"{prefix}:{{default}}:*", count=1000):
        keys.add(key)
    return keys


def normalise(value: Any) -> Any:
    return json.loads(json.dumps(value))


@settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
async def test_accepted_round_trips_and_rejected_writes_nothing(
    body: dict[str, Any], make_api: ApiFactory, redis: Redis, prefix: str
) -> None:
    async with make_api(strict_types=False, allow_private_networks=True) as client:
        before = await queue_keys(redis, prefix)
        response: httpx.Response = await client.post("/api/tasks", json=body)
        if response.status_code == 200:  # an earlier task with the same idempotency key
            assert response.json()["idempotency_key"] == body["idempotency_key"]
            assert await queue_keys(redis, prefix) == before
        elif response.status_code == 201:
            created = response.json()
            stored = (await client.get(f"/api/tasks/{created['id']}")).json()
            assert stored["payload"] == normalise(body.get("payload"))
            for field in FIELDS:
                if field in body and body[field] is not None:
                    assert stored[field] == body[field], field
            for field in ("payload", "priority", "max_retries", "webhook", "created_at"):
                assert stored[field] == created[field], field
        else:
            assert response.status_code == 422, response.text
            assert response.json()["detail"][0]["loc"][0] == "body"
            assert await queue_keys(redis, prefix) == before
