"""The batch route's body (services/api/encoding.py) is written by orjson, FastAPI's was written by
pydantic: the two must give the same bytes for every value a task can carry."""

from __future__ import annotations

import json
import random
import struct
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter

from streamq.services.api.encoding import TaskJson, batch_json
from streamq.shared.models import AttemptError, BatchResult, TaskCreate, TaskStatus
from streamq.shared.queue import Stored, _encode

ANY = TypeAdapter(Any)
BATCH = TypeAdapter(BatchResult)
FLOATS = [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e-7, 1e-5, 1e-4, 0.1, 1 / 3, 2.5,
          100.0, 604800.0, 1e15, 1e16, 1e17, 1e21, 1e22, 9007199254740993.0, 123456789012345680000.0]  # fmt: skip


def test_orjson_writes_floats_ints_and_strings_as_pydantic_does() -> None:
    rnd = random.Random(7)
    floats = list(FLOATS)
    while len(floats) < 20_000:  # random bit patterns: every exponent, subnormals included
        value = struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
        if value == value and abs(value) != float("inf"):
            floats.append(value)
    floats += [round(rnd.uniform(0, 1000), rnd.randint(0, 6)) for _ in range(5_000)]
    assert orjson.dumps(floats) == ANY.dump_json(floats)
    ints = [0, -1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1]
    assert orjson.dumps(ints) == ANY.dump_json(ints)
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)  # escapes, raw UTF-8
    assert orjson.dumps(text) == ANY.dump_json(text)


BODIES: list[dict[str, Any]] = [
    {"type": "noop"},
    {"type": "echo", "payload": {"a": [1, 2.5, -0.0, 1e-7, 1e16, 2**63, None, True, 'é\u2028"\\\n'], "": {}}},
    {"type": "echo", "payload": "text", "priority": 5, "max_retries": 0, "timeout_s": 5, "retry_backoff_s": 0.25},
    {"type": "noop", "webhook": "https://example.com/hook?q=é", "idempotency_key": 'k"é\t'},
    {"type": "noop", "queue": "bulk", "scheduled_for": "2099-01-01T00:00:00.5+02:00"},
    {"type": "noop", "scheduled_for": "2000-01-01T00:00:00Z"},  # due already: pending, scheduled_for null
]


@pytest.mark.parametrize("created_ms", [1_764_331_962_123, 1_764_331_962_000, 0])
def test_batch_json_is_the_batch_result_pydantic_writes(created_ms: int) -> None:
    tasks = [TaskCreate.model_validate(json.loads(json.dumps(b))) for b in BODIES]
    done = [
        Stored(task, f"01KB{i:022d}", task.queue or "default", "scheduled" if i == 4 else "pending", created_ms, None)
        for i, task in enumerate(tasks)
    ]
    history = [AttemptError(attempt=1, error="boom", at=datetime(2030, 1, 1, tzinfo=UTC))]
    update = {"attempts": 1, "error": "boom", "status": TaskStatus.FAILED, "history": history, "result": [1.5]}
    earlier = done[0].submitted().task.model_copy(update=update)
    done.append(Stored(tasks[3], earlier.id, "default", "", 0, earlier))  # an idempotent duplicate
    expected = BATCH.dump_json(BatchResult(tasks=[s.submitted().task for s in done], created=6, duplicates=1))
    assert batch_json(done) == expected


def test_hash_fields_of_a_task() -> None:
    """A new task's hash fields (shared/queue.py ``_encode``, as fire.lua stores them; submit.lua writes
    the same fields from its fixed per-task arguments and the optional ones from ``_extras``). No id or
    queue: both are in the hash's key."""
    full = TaskCreate.model_validate(
        {"type": "echo", "payload": {"a": [1, 2.5]}, "webhook": "http://h/x", "timeout_s": 5, "retry_backoff_s": 1e-7,
         "idempotency_key": "k", "priority": 5, "max_retries": 0}
    )  # fmt: skip
    assert _encode(full) == [
        "type", "echo", "priority", "5", "payload", '{"a":[1,2.5]}', "max_retries", "0",
        "webhook", "http://h/x", "timeout_s", "5.0", "retry_backoff_s", "1e-07", "idempotency_key", "k",
    ]  # fmt: skip
    bare = TaskCreate(type="noop")
    assert _encode(bare) == ["type", "noop", "priority", "3", "payload", "null", "max_retries", "3"]
    assert _encode(TaskCreate(type="noop", payload=0))[5] == "0"


@pytest.mark.parametrize("created_ms", [1_764_331_962_123, 1_764_331_962_000, 0])
def test_task_json_is_the_task_public_pydantic_writes(created_ms: int) -> None:
    """``POST /api/tasks``'s fast path answers with ``TaskJson``: the bytes of the ``TaskPublic`` that
    ``Stored.submitted`` builds (what the route and the earlier fast path sent)."""
    encode = TaskJson()
    tasks = [TaskCreate.model_validate(json.loads(json.dumps(b))) for b in BODIES]
    for stamp in (created_ms, created_ms + 1, created_ms):  # the cached created_at follows the calls
        for i, task in enumerate(tasks):
            stored = Stored(task, f"01KB{i:022d}", task.queue or "default", "scheduled" if i == 4 else "pending",
                            stamp, None)  # fmt: skip
            public = stored.submitted().task
            assert encode(stored) == public.__pydantic_serializer__.to_json(public)
    earlier = Stored(tasks[0], "01KB0", "default", "pending", created_ms, None).submitted().task
    earlier = earlier.model_copy(update={"attempts": 1, "error": "boom", "status": TaskStatus.FAILED})
    duplicate = Stored(tasks[0], earlier.id, "default", "", 0, earlier)
    assert encode(duplicate) == earlier.__pydantic_serializer__.to_json(earlier)
