from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from streamq.shared.keys import KeySchema
from streamq.shared.models import (
    MAX_MS,
    MAX_PAYLOAD_BYTES,
    TERMINAL,
    TaskBatchCreate,
    TaskCreate,
    TaskStatus,
    dt_to_ms,
    ms_to_dt,
    new_task_id,
    new_task_ids,
)
from streamq.shared.queue import decode_task
from streamq.shared.settings import Settings, describe_error


def test_seed_shape_gets_defaults() -> None:
    task = TaskCreate.model_validate({"type": "email", "payload": "user@example.com"})
    assert (task.priority, task.max_retries, task.scheduled_for, task.webhook) == (3, 3, None, None)


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"type": "echo", "priority": 0}, "priority", "greater than or equal to 1"),
        ({"type": "echo", "priority": 6}, "priority", "less than or equal to 5"),
        ({"type": "echo", "max_retries": 101}, "max_retries", "less than or equal to 100"),
        ({"type": "echo", "max_retries": -1}, "max_retries", "greater than or equal to 0"),
        ({"type": ""}, "type", "at least 1"),
        ({"type": "bad type!"}, "type", "pattern"),
        ({"type": "echo", "scheduled_for": "2030-01-01T00:00:00"}, "scheduled_for", "time zone"),
        ({"type": "echo", "webhook": "ftp://example.com/x"}, "webhook", "http"),
        ({"type": "echo", "priority": True}, "priority", "JSON integer"),
        ({"type": "echo", "priority": "3"}, "priority", "JSON integer"),
        ({"type": "echo", "max_retries": 2.5}, "max_retries", "whole number"),
        ({"type": "echo", "timeout_s": False}, "timeout_s", "JSON number"),
        ({"type": "echo", "scheduled_for": 0}, "scheduled_for", "ISO 8601"),
        # local times whose UTC form is outside years 1-9999: storable as ms, never readable back
        ({"type": "echo", "scheduled_for": "9999-12-31T23:59:59-23:59"}, "scheduled_for", "once converted to UTC"),
        ({"type": "echo", "scheduled_for": "0001-01-01T00:00:00+14:00"}, "scheduled_for", "once converted to UTC"),
        ({"type": "echo", "payload": float("nan")}, "payload", "plain JSON"),
        ({"type": "echo", "payload": 2**70}, "payload", "plain JSON"),
        ({"type": "echo", "timeout_s": 0}, "timeout_s", "greater than 0"),
        ({"type": "echo", "surprise": 1}, "surprise", "Extra inputs"),
        ({"type": "echo", "payload": "x" * MAX_PAYLOAD_BYTES}, "payload", "256 KiB"),
    ],
)
def test_bad_fields_are_named(body: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        TaskCreate.model_validate(body)
    [error] = info.value.errors()
    assert error["loc"][0] == field
    assert fragment in error["msg"]


def test_payload_limit_is_inclusive() -> None:
    payload = "x" * (MAX_PAYLOAD_BYTES - 2)  # two quote characters when serialised
    assert TaskCreate(type="echo", payload=payload).payload == payload


def test_batch_bounds() -> None:
    with pytest.raises(ValidationError):
        TaskBatchCreate.model_validate({"tasks": []})
    with pytest.raises(ValidationError):
        TaskBatchCreate.model_validate({"tasks": [{"type": "noop"}] * 1001})
    assert len(TaskBatchCreate.model_validate({"tasks": [{"type": "noop"}] * 1000}).tasks) == 1000


def test_task_ids_sort_by_time_and_are_unique() -> None:
    now = int(time.time() * 1000)
    earlier, later = new_task_id(now), new_task_id(now + 1)
    assert len(earlier) == 26 and earlier < later
    assert len({new_task_id(now) for _ in range(10_000)}) == 10_000


def test_task_ids_from_many_threads_are_unique() -> None:
    """The blocking client makes ids on its callers' threads (streamq/direct.py)."""
    now = int(time.time() * 1000)
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: [new_task_id(now) for _ in range(2_000)] + new_task_ids(500, now), range(8)))
    ids = [i for batch in made for i in batch]
    assert len(set(ids)) == len(ids) == 8 * 2_500


def test_a_forked_child_does_not_continue_its_parents_ids() -> None:
    """Its parent's next id in the same millisecond would be the child's too (a pre-forked web server)."""
    ms = int(time.time() * 1000)
    new_task_id(ms)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id in that millisecond
        try:
            os.write(write, new_task_id(ms).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert len(child) == 26 and child != new_task_id(ms)


def test_terminal_set() -> None:
    assert {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED} == TERMINAL


def test_keys_share_one_hash_tag() -> None:
    keys = KeySchema("sq", "emails")
    per_queue = [*keys.common(), keys.task("01ABC"), keys.index_type("echo"), keys.idempotency("k{x}")]
    assert all(k.startswith("sq:{emails}:") for k in per_queue)
    assert keys.streams() == [f"sq:{{emails}}:stream:{p}" for p in (5, 4, 3, 2, 1)]
    assert len(set(keys.common())) == 16


def test_settings_errors_name_the_variable() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(worker_concurrency=0, _env_file=None)  # type: ignore[call-arg]
    assert describe_error(info.value).startswith("invalid setting STREAMQ_WORKER_CONCURRENCY:")


def test_settings_lists_from_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMQ_HANDLERS", "a.b, c.d ,")
    monkeypatch.setenv("STREAMQ_TASK_TYPES", "x")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.handlers == ["a.b", "c.d"] and s.task_types == ["x"]


def test_aware_datetime_accepted() -> None:
    task = TaskCreate.model_validate({"type": "echo", "scheduled_for": "2030-01-01T00:00:00+02:00"})
    assert task.scheduled_for == datetime(2029, 12, 31, 22, tzinfo=UTC)


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59+05:00"])
def test_times_at_the_edges_round_trip(when: str) -> None:
    """Whatever time the model accepts is stored as milliseconds and read back as the same instant."""
    due = TaskCreate.model_validate({"type": "echo", "scheduled_for": when}).scheduled_for
    assert due is not None
    assert ms_to_dt(dt_to_ms(due)) == due


def test_stored_times_read_back_whatever_they_are() -> None:
    """A stored time outside what a datetime holds (written before the edge refused it) reads as the
    nearest one it holds instead of raising."""
    assert ms_to_dt(253_402_387_139_000) == ms_to_dt(MAX_MS)  # 10000-01-01T23:58:59Z, once accepted
    assert ms_to_dt(-(10**18)) == datetime(1, 1, 1, tzinfo=UTC)
    assert ms_to_dt(None) is None and ms_to_dt("") is None


def test_decoding_a_damaged_record_never_raises() -> None:
    """One bad task hash must not fail the page or route that reads it: unreadable fields keep their
    defaults and are named in ``error``; the readable ones are read."""
    raw = {
        "type": "noop", "priority": "x", "max_retries": "3", "status": "bogus", "created_at": "1700000000000",
        "payload": "{not json", "history": '[{"attempt": 1}]', "scheduled_for": "253402387139000",
        "error": "boom",
    }  # fmt: skip
    task = decode_task(raw, "01ABC", "default")
    assert (task.id, task.type, task.max_retries, task.priority, task.payload) == ("01ABC", "noop", 3, 0, None)
    assert task.created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert task.scheduled_for == ms_to_dt(MAX_MS) and task.history == []
    assert task.error == "boom; stored record unreadable: payload, priority, status, history"
    assert decode_task({"type": "noop"}, "01ABC", "q").error == (
        "stored record unreadable: priority, max_retries, status, created_at"
    )


@pytest.mark.parametrize(
    ("last", "count"),
    [
        (None, 1000),  # a fresh millisecond: random start
        ((0, 5), 1),
        ((0, 5), 0),
        ((0, (1 << 20) - 3), 10),  # the digits above the last 20 bits change mid-batch
        ((0, (1 << 40) - 500), 1000),  # ... and those above 40
        ((0, (1 << 80) - 600), 1000),  # the random part runs out: the next millisecond borrowed
        ((0, (1 << 80) - 1), 3),
        ((7, 12345), 500),  # the clock went back 7 ms: the later millisecond is kept
        ((-3, 12345), 500),  # the clock moved on: a fresh random part
    ],
)
def test_new_task_ids_are_those_of_one_call_per_id(
    monkeypatch: pytest.MonkeyPatch, last: tuple[int, int] | None, count: int
) -> None:
    from streamq.shared import models

    now = 1_764_331_962_123
    start = [0, 0] if last is None else [now + last[0], last[1]]
    draws = iter(range(10**6))
    monkeypatch.setattr(models.os, "urandom", lambda n: (next(draws) * 7919 + 123456789).to_bytes(n, "big"))
    monkeypatch.setattr(models, "_LAST_ID", list(start))
    one_by_one = [models.new_task_id(now) for _ in range(count)]
    state = list(models._LAST_ID)
    draws = iter(range(10**6))
    monkeypatch.setattr(models, "_LAST_ID", list(start))
    assert models.new_task_ids(count, now) == one_by_one
    assert list(models._LAST_ID) == state  # where the next call goes on from
