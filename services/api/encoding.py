"""The body of ``POST /api/tasks/batch``, serialised once with orjson from submit.lua's records.

Building a ``TaskPublic`` per task (``TaskStatus(...)``, ``model_dump`` of the ``TaskCreate``, a
validated ``TaskPublic``, a ``datetime`` per task) and serialising a ``BatchResult`` through pydantic
costs most of the api's CPU per task (py-spy, ``bench/README.md``). Here each new task
is a plain dict in ``TaskPublic``'s field order, the dates are formatted by pydantic's own datetime
serialiser (``created_at`` once per script call), an idempotent duplicate is the earlier task's
pydantic JSON as is, and orjson writes the whole body.

The bytes are those of ``TypeAdapter(BatchResult).dump_json`` (what FastAPI sends for the route's
response model): orjson and pydantic-core write strings, integers and floats alike (shortest
round-trip floats; checked in ``tests/unit/test_encoding.py``), and payloads, the only free-form
values, are plain JSON (``TaskCreate`` refuses NaN, infinities, ints over 64 bits and lone
surrogates). ``tests/integration/test_api.py`` compares the body with the pydantic one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import TypeAdapter

from streamq.shared.models import TaskCreate, TaskPublic, TaskStatus, ms_to_dt
from streamq.shared.queue import UNIQUE_HELD, Stored
from streamq.shared.redaction import redact_payload

_DATETIME = TypeAdapter(datetime)
_STATUS = {s.value: s.value for s in TaskStatus}  # a status submit.lua cannot return fails (KeyError)
# every TaskPublic field in declaration order, at its default (the required ones are set per task)
_TEMPLATE: dict[str, Any] = {
    name: None if field.is_required() else field.get_default(call_default_factory=True)
    for name, field in TaskPublic.model_fields.items()
}
if not set(TaskCreate.model_fields) <= set(_TEMPLATE):  # a TaskCreate field TaskPublic lacks: see new_task
    raise RuntimeError("every TaskCreate field must be a TaskPublic field too (services/api/encoding.py)")


def date_json(value: datetime) -> orjson.Fragment:
    """``value`` as pydantic writes a ``datetime`` field (e.g. ``"2030-01-01T12:00:00.123000Z"``)."""
    return orjson.Fragment(_DATETIME.dump_json(value))


def new_task(stored: Stored, created_at: orjson.Fragment) -> dict[str, Any]:
    """A new task's public form as a dict in ``TaskPublic``'s field order (what ``_public`` in
    shared/queue.py builds as a model: the ``TaskCreate`` fields, then id, queue, status, dates)."""
    task = stored.task
    out = _TEMPLATE.copy()
    out.update(task.__dict__)  # type, payload, priority, ... in place (queue and scheduled_for set below)
    if task.unique is not None or task.debounce is not None:  # models: as plain dicts for orjson
        out["unique"] = None if task.unique is None else task.unique.model_dump()
        out["debounce"] = None if task.debounce is None else task.debounce.model_dump()
    out["payload"] = redact_payload(task.type, task.payload)  # as TaskPublic shows it
    out["id"] = stored.id
    out["queue"] = stored.queue
    out["status"] = status = _STATUS[stored.status]
    due = task.scheduled_for if status == TaskStatus.SCHEDULED else None
    out["scheduled_for"] = None if due is None else date_json(due)
    out["created_at"] = created_at
    return out


def batch_json(done: Sequence[Stored]) -> bytes:
    """``BatchResult(tasks=..., created=..., duplicates=...)`` as JSON bytes."""
    tasks: list[Any] = []
    stamps: dict[int, orjson.Fragment] = {}  # created_ms -> its JSON (one per script call)
    created = 0
    unique_duplicates: list[int] = []
    for stored in done:
        earlier = stored.earlier
        if earlier is not None:
            if stored.kind == UNIQUE_HELD:
                unique_duplicates.append(len(tasks))
            tasks.append(orjson.Fragment(earlier.__pydantic_serializer__.to_json(earlier)))
            continue
        stamp = stamps.get(stored.created_ms)
        if stamp is None:
            stamp = stamps[stored.created_ms] = date_json(ms_to_dt(stored.created_ms))  # type: ignore[arg-type]
        tasks.append(new_task(stored, stamp))
        created += 1
    duplicates = len(done) - created
    return orjson.dumps(
        {"tasks": tasks, "created": created, "duplicates": duplicates, "unique_duplicates": unique_duplicates}
    )


class TaskJson:
    """One submitted task as ``POST /api/tasks`` answers it: the ``TaskPublic`` JSON pydantic writes, from
    submit.lua's record (the fast path; a ``TaskPublic`` and its dump cost more than the whole rest of the
    encoding). Tasks of one script call share their ``created_at``, formatted once."""

    def __init__(self) -> None:
        self._stamp: tuple[int, orjson.Fragment] = (-1, orjson.Fragment(b"null"))

    def __call__(self, stored: Stored) -> bytes:
        earlier = stored.earlier
        if earlier is not None:
            return earlier.__pydantic_serializer__.to_json(earlier)
        created_ms, stamp = self._stamp
        if created_ms != stored.created_ms:
            stamp = date_json(ms_to_dt(stored.created_ms))  # type: ignore[arg-type]
            self._stamp = (stored.created_ms, stamp)
        return orjson.dumps(new_task(stored, stamp))
