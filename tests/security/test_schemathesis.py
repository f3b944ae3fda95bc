"""schemathesis against the api's own OpenAPI schema, on a real api process: no 5xx, every response
matches the schema. Bounded and seeded (STREAMQ_FUZZ_EXAMPLES examples per operation, default 200)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import allow_header_conformance, positive_data_acceptance

from streamq.services.api.app import create_app
from streamq.shared.keys import KeySchema
from streamq.shared.settings import Settings
from streamq.testing import RedisServer, Service, free_port, wait_http

EXAMPLES = int(os.environ.get("STREAMQ_FUZZ_EXAMPLES", "200"))  # more: set it (the suite keeps to 15 min)


@pytest.fixture(scope="module")
def api_url(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {
        "STREAMQ_REDIS_URL": redis_server.url,
        "STREAMQ_KEY_PREFIX": f"fuzz{uuid.uuid4().hex[:8]}",
        "STREAMQ_API_PORT": str(port),
        "STREAMQ_STRICT_TYPES": "false",
    }
    api = Service("streamq.services.api", env, Path(tmp_path_factory.mktemp("fuzz")))
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health")
        _plant_poison(f"http://127.0.0.1:{port}", redis_server.url, env["STREAMQ_KEY_PREFIX"])
        yield f"http://127.0.0.1:{port}"
    finally:
        assert api.stop() == 0
        assert "Traceback" not in api.log(), api.log()[-3000:]


def _plant_poison(url: str, redis_url: str, prefix: str) -> None:
    """A task no version of the api should have to read, but one did store: scheduled for year 10000
    (what ``9999-12-31T23:59:59-23:59`` became) with a payload that is not JSON. Every list, count and
    route the fuzzer reaches must still answer without a 5xx."""
    r = httpx.post(f"{url}/api/tasks", json={"type": "noop", "scheduled_for": "2100-01-01T00:00:00Z"}, timeout=10)
    task_id = r.json()["id"]
    keys = KeySchema(prefix, "default")
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        client.hset(keys.task(task_id), mapping={"scheduled_for": "253402387139000", "payload": "{"})
        client.zadd(keys.scheduled, {task_id: 253402387139000})
    assert httpx.get(f"{url}/api/tasks", timeout=10).json()["tasks"][0]["id"] == task_id


# the schema the app publishes, built without a server (the same one /openapi.json serves)
schema = schemathesis.openapi.from_dict(create_app(Settings(_env_file=None)).openapi())  # type: ignore[call-arg]


@pytest.mark.e2e
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_matches_its_schema(case: Any, api_url: str) -> None:
    # Left out: (1) Starlette's 405 lists the methods of the first route matching the path only, not
    # every method of the path; (2) "schema-valid data is accepted": the api rightly refuses more than a
    # JSON schema can say (SSRF-blocked URLs, cron syntax, unknown task types) with a 422 naming the rule.
    case.call_and_validate(base_url=api_url, excluded_checks=[allow_header_conformance, positive_data_acceptance])
