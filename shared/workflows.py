"""Workflows: a DAG of tasks declared in JSON (docs/workflows.md).

A workflow and all its steps live in one queue partition (picked by a stable hash of its idempotency key or
id), so each state change is one script in one hash slot: ``workflow_submit.lua`` stores everything,
lib.lua's ``workflow_step_ended`` (called from finish.lua, cancel.lua and poison.lua through the flow hook)
releases children or skips descendants in the same script that records a step's outcome, and
``workflow_cancel.lua`` / ``workflow_retry.lua`` act on a whole workflow.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamq.shared.errors import Conflict, NotFound
from streamq.shared.models import (
    EPOCH,
    TaskCreate,
    TaskStatus,
    TaskType,
    _json_number,
    dt_to_ms,
    ms_to_dt,
    new_task_id,
    new_task_ids,
)
from streamq.shared.queue import Queue, _extras, _payload
from streamq.shared.queues import partition_of

MAX_STEPS = 1000
# the events a workflow's webhook gets (the notifier; lib.lua wf_end emits them)
WORKFLOW_ENDS = frozenset({"workflow.completed", "workflow.failed", "workflow.cancelled"})
ON_FAILURE = "on_failure"  # the `step` of a workflow's on_failure task (lib.lua WF_ON_FAILURE)
StepName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
ListFilter = Annotated[str, Field(min_length=1, max_length=128)]
# a workflow id is a task id (a ULID): any other is no workflow's, and never names another key (wf:idx...)
WORKFLOW_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


class WorkflowNotFound(NotFound):
    def __init__(self, workflow_id: str) -> None:
        NotFound.__init__(self, workflow_id)
        self.args = (f"workflow {workflow_id} not found",)


class WorkflowConflict(Conflict):
    """The workflow's status does not allow the operation."""

    def __init__(self, workflow_id: str, status: str, reason: str) -> None:
        Conflict.__init__(self, workflow_id, status, reason)
        self.args = (f"workflow {workflow_id} is {status}: {reason}",)


class WorkflowStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepCreate(TaskCreate):
    """One step: the fields of a task, the steps it runs after, and an optional delay once released."""

    after: list[StepName] = Field(default_factory=list, max_length=MAX_STEPS)
    # seconds to wait once its last parent completed (its scheduled_for, if later, still holds)
    delay_s: float | None = Field(default=None, ge=0, le=7 * 24 * 3600)

    _delay = field_validator("delay_s", mode="before")(_json_number)


class WorkflowCreate(BaseModel):
    """What a client sends to start a workflow (POST /api/workflows)."""

    model_config = ConfigDict(extra="forbid")

    name: TaskType
    queue: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    webhook: str | None = Field(default=None, max_length=2048)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    steps: dict[StepName, StepCreate] = Field(min_length=1, max_length=MAX_STEPS)
    on_failure: TaskCreate | None = None  # runs once when the workflow ends failed, with the failed steps' errors

    _webhook = field_validator("webhook")(TaskCreate._webhook_url.__func__)  # type: ignore[attr-defined]


def _problem(loc: Sequence[str | int], msg: str, kind: str, value: Any) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": kind, "input": value}


def graph_problems(wf: WorkflowCreate) -> list[dict[str, Any]]:
    """422 items for what the model cannot check alone: a step naming itself or an unknown step in
    ``after``, a cycle (one is named), a step in another queue or with its own idempotency key."""
    errors: list[dict[str, Any]] = []
    for name, step in wf.steps.items():
        for parent in step.after:
            if parent == name:
                errors.append(_problem(["steps", name, "after"], f"step {name!r} cannot run after itself",
                                       "self_dependency", parent))  # fmt: skip
            elif parent not in wf.steps:
                errors.append(_problem(["steps", name, "after"], f"step {name!r} runs after {parent!r}, "
                                       "which is not a step of this workflow", "unknown_step", parent))  # fmt: skip
        if len(set(step.after)) != len(step.after):
            errors.append(_problem(["steps", name, "after"], f"step {name!r} names a parent twice", "duplicate_parent",
                                   step.after))  # fmt: skip
        if step.queue is not None and step.queue != wf.queue:
            errors.append(_problem(["steps", name, "queue"], f"step {name!r}: steps run in the workflow's queue; "
                                   "set queue on the workflow, not on a step", "step_queue", step.queue))  # fmt: skip
        if step.idempotency_key is not None:
            errors.append(_problem(["steps", name, "idempotency_key"], f"step {name!r}: steps take no "
                                   "idempotency_key; give the workflow one", "step_idempotency_key",
                                   step.idempotency_key))  # fmt: skip
    named: list[tuple[list[str], TaskCreate]] = [(["steps", name], step) for name, step in wf.steps.items()]
    if wf.on_failure is not None:
        named.append((["on_failure"], wf.on_failure))
    for loc, task in named:  # each needs its own slot's state; a workflow's steps all live in its partition
        for field in ("group", "unique", "debounce"):
            if getattr(task, field) is not None:
                errors.append(_problem([*loc, field], f"{'.'.join(loc)}: workflow steps take no {field} (a "
                                       "workflow's steps share its queue partition)", "step_flow_control",
                                       field))  # fmt: skip
    if wf.on_failure is not None and wf.on_failure.queue not in (None, wf.queue):
        errors.append(_problem(["on_failure", "queue"], "on_failure runs in the workflow's queue", "step_queue",
                               wf.on_failure.queue))  # fmt: skip
    if not errors:
        cycle = find_cycle({name: step.after for name, step in wf.steps.items()})
        if cycle:
            path = " -> ".join([*cycle, cycle[0]])
            errors.append(_problem(["steps", cycle[0], "after"], f"the steps form a cycle: {path}", "cycle", cycle))
    return errors


def find_cycle(after: dict[str, list[str]]) -> list[str] | None:
    """One cycle of the graph (step -> the steps it runs after), as the steps along it, or None.
    Iterative depth-first search (a 1,000-step chain must not hit Python's recursion limit)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in after:
        if state.get(start):
            continue
        path: list[str] = [start]
        iters = [iter(after.get(start, []))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(after.get(nxt, [])))
    return None


class StepPublic(BaseModel):
    """One step of a workflow as GET /api/workflows/{id} shows it."""

    name: str
    task_id: str
    type: str
    status: TaskStatus
    after: list[str] = Field(default_factory=list)
    attempts: int = 0
    result: Any = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


class WorkflowSummary(BaseModel):
    """A workflow in a list page (no steps)."""

    id: str
    name: str
    queue: str
    status: WorkflowStatus
    created_at: datetime
    completed_at: datetime | None = None
    steps_total: int = 0
    steps_open: int = 0  # steps not ended yet


class WorkflowPublic(WorkflowSummary):
    """A workflow with every step's state (GET /api/workflows/{id})."""

    webhook: str | None = None
    idempotency_key: str | None = None
    steps: dict[str, StepPublic] = Field(default_factory=dict)
    on_failure: StepPublic | None = None


class WorkflowPage(BaseModel):
    workflows: list[WorkflowSummary]
    next_cursor: str | None = None


_STEP_FIELDS = ("status", "type", "attempts", "result", "error", "started_at", "completed_at", "parent_names")


def _loads(value: str | None) -> Any:
    if not value:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def _status(value: str | None) -> TaskStatus:
    try:
        return TaskStatus(value or "")
    except ValueError:
        return TaskStatus.FAILED


def _step(name: str, task_id: str, values: Sequence[str | None]) -> StepPublic:
    status, task_type, attempts, result, error, started, completed, parents = values
    return StepPublic(
        name=name,
        task_id=task_id,
        type=task_type or "",
        status=_status(status),
        after=(parents or "").split(),
        attempts=int(attempts) if attempts and attempts.isdigit() else 0,
        result=_loads(result),
        error=error or None,
        started_at=ms_to_dt(started) if started else None,
        completed_at=ms_to_dt(completed) if completed else None,
    )


def _summary(workflow_id: str, queue: str, raw: dict[str, str]) -> dict[str, Any]:
    status = raw.get("status", "running")
    return {
        "id": workflow_id,
        "name": raw.get("name", ""),
        "queue": queue,
        "status": WorkflowStatus(status) if status in WorkflowStatus.__members__.values() else "failed",
        "created_at": ms_to_dt(raw.get("created_at", "0")) or EPOCH,
        "completed_at": ms_to_dt(raw["completed_at"]) if raw.get("completed_at") else None,
        "steps_total": int(raw.get("total") or 0),
        "steps_open": max(0, int(raw.get("open") or 0)),
    }


class Workflows:
    """Start, read, list, cancel and retry workflows over a broker's queues and partitions."""

    def __init__(self, broker: Any, *, idempotency_ttl_s: int = 24 * 3600) -> None:
        self.broker = broker  # streamq.shared.broker.Broker (Any: it imports nothing of this module)
        self.idempotency_ttl_s = idempotency_ttl_s

    # --- submit ----------------------------------------------------------------------------------
    async def submit(self, wf: WorkflowCreate) -> tuple[WorkflowPublic, bool]:
        """Store a (checked) workflow; returns it and whether it is an earlier one with the same
        idempotency key (nothing written then)."""
        if self.broker.memory_guard is not None:
            self.broker.memory_guard.check()
        config = await self.broker.config(wf.queue or self.broker.keys.queue)
        now_ms = int(time.time() * 1000)
        workflow_id = new_task_id(now_ms)
        part = partition_of(wf.idempotency_key or workflow_id, config.partitions)
        q: Queue = self.broker.queue(config.name, part)
        keys, args = self.submit_call(q, wf, workflow_id, now_ms)
        ok, value = await q.scripts.call("workflow_submit", keys, args)
        if int(ok):
            return await self._get_in(q, workflow_id), False
        return await self._get_in(q, str(value)), True

    def submit_call(self, q: Queue, wf: WorkflowCreate, workflow_id: str, now_ms: int) -> tuple[list[str], list[Any]]:
        """workflow_submit.lua's KEYS and ARGV."""
        names = list(wf.steps)
        made = new_task_ids(len(names) + 1, now_ms)
        ids, failure_id = dict(zip(names, made, strict=False)), made[-1]
        children: dict[str, list[str]] = {name: [] for name in names}
        for name, step in wf.steps.items():
            for parent in step.after:
                children[parent].append(ids[name])
        args: list[Any] = [
            q.events_maxlen, self.idempotency_ttl_s, q.keys.base, workflow_id, wf.idempotency_key or "", wf.name,
            wf.webhook or "", q.result_ttl_ms, len(names), orjson.dumps(ids).decode(),
            "1" if wf.on_failure is not None else "0",
        ]  # fmt: skip
        for name, step in wf.steps.items():
            args += self._task_args(ids[name], name, step, step.delay_s, step.after, ids, children[name])
        if wf.on_failure is not None:
            args += self._task_args(failure_id, ON_FAILURE, wf.on_failure, None, [], ids, [])
        return list(q.keys.common()), args

    @staticmethod
    def _task_args(
        task_id: str,
        name: str,
        task: TaskCreate,
        delay_s: float | None,
        after: list[str],
        ids: dict[str, str],
        children: list[str],
    ) -> list[Any]:
        due = dt_to_ms(task.scheduled_for) if task.scheduled_for else 0
        extras = _extras(task)
        return [
            task_id, name, task.type, task.priority, due, int((delay_s or 0) * 1000), _payload(task), task.max_retries,
            " ".join(ids[p] for p in after), " ".join(after), " ".join(children), len(extras) // 2, *extras,
        ]  # fmt: skip

    # --- read ------------------------------------------------------------------------------------
    async def _partitions(self, queue: str | None = None) -> list[Queue]:
        return [q for config in await self.broker.configs(queue) for q in self.broker.partitions(config)]

    async def locate(self, workflow_id: str) -> Queue:
        """The partition holding the workflow: one pipelined EXISTS over every known partition (404 for an
        id that is not a task id, as for a task)."""
        if not WORKFLOW_ID.fullmatch(workflow_id):
            raise WorkflowNotFound(workflow_id)
        found: Queue | None = await self.broker.holder(
            await self._partitions(), lambda keys: keys.workflow(workflow_id)
        )
        if found is None:
            raise WorkflowNotFound(workflow_id)
        return found

    async def get(self, workflow_id: str) -> WorkflowPublic:
        return await self._get_in(await self.locate(workflow_id), workflow_id)

    async def _get_in(self, q: Queue, workflow_id: str) -> WorkflowPublic:
        raw: dict[str, str] = await q.redis.hgetall(q.keys.workflow(workflow_id))
        if not raw:
            raise WorkflowNotFound(workflow_id)
        steps: dict[str, str] = _loads(raw.get("steps")) or {}
        failure_id = raw.get("on_failure_id") or ""
        pipe = q.redis.pipeline(transaction=False)
        for task_id in steps.values():
            pipe.hmget(q.keys.task(task_id), _STEP_FIELDS)
        if failure_id:
            pipe.hmget(q.keys.task(failure_id), _STEP_FIELDS)
        rows = await pipe.execute() if steps or failure_id else []
        public = {name: _step(name, task_id, row) for (name, task_id), row in zip(steps.items(), rows, strict=False)}
        on_failure = _step(ON_FAILURE, failure_id, rows[-1]) if failure_id else None
        return WorkflowPublic(
            **_summary(workflow_id, q.keys.queue, raw),
            webhook=raw.get("webhook") or None,
            idempotency_key=raw.get("idempotency_key") or None,
            steps=public,
            on_failure=on_failure,
        )

    async def list(
        self,
        *,
        status: WorkflowStatus | None = None,
        name: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[WorkflowSummary], str | None]:
        """Newest first over every partition (of ``queue``); ``name`` is checked on the records, at most
        20 pages' worth of ids per call (a short page still carries a cursor to go on from)."""
        parts = await self._partitions(queue)
        upper = f"({cursor}" if cursor else "+"
        found: list[WorkflowSummary] = []
        budget = limit * 20
        while len(found) < limit and budget > 0:
            chunk = limit if name is None else max(limit * 2, 100)
            pages = await asyncio.gather(
                *(q.redis.zrange(q.keys.workflow_index(status), upper, "-", desc=True, bylex=True, offset=0, num=chunk)
                  for q in parts)
            )  # fmt: skip
            merged = sorted(((wid, q) for q, ids in zip(parts, pages, strict=True) for wid in ids), reverse=True,
                            key=lambda pair: pair[0])[:chunk]  # fmt: skip
            if not merged:
                return found, None
            budget -= len(merged)
            pipe = self.broker.redis.pipeline(transaction=False)
            for wid, q in merged:
                pipe.hgetall(q.keys.workflow(wid))
            for (wid, q), raw in zip(merged, await pipe.execute(), strict=True):
                if raw and (name is None or raw.get("name") == name):
                    found.append(WorkflowSummary(**_summary(wid, q.keys.queue, raw)))
                    if len(found) == limit:
                        return found, wid
            upper = f"({merged[-1][0]}"
            if len(merged) < chunk:
                return found, None
        return found, upper[1:] if found or budget <= 0 else None

    # --- state changes ---------------------------------------------------------------------------
    async def cancel(self, workflow_id: str) -> WorkflowPublic:
        """Waiting steps skipped, pending and scheduled ones cancelled, running ones asked to stop; the
        workflow ends cancelled once none runs. 409 when it has already ended."""
        q = await self.locate(workflow_id)
        ok, status = await q.scripts.call(
            "workflow_cancel",
            [*q.keys.common(), q.keys.workflow(workflow_id), q.keys.cancels],
            [q.events_maxlen, workflow_id, q.result_ttl_ms],
        )
        self._check(workflow_id, ok, status, "only a running workflow can be cancelled")
        return await self._get_in(q, workflow_id)

    async def retry(self, workflow_id: str) -> WorkflowPublic:
        """Re-run the failed, cancelled and skipped steps of a failed or cancelled workflow (409 otherwise)."""
        q = await self.locate(workflow_id)
        ok, status = await q.scripts.call(
            "workflow_retry", [*q.keys.common(), q.keys.workflow(workflow_id)], [q.events_maxlen, workflow_id]
        )
        self._check(workflow_id, ok, status, "only a failed or cancelled workflow can be retried")
        return await self._get_in(q, workflow_id)

    @staticmethod
    def _check(workflow_id: str, ok: Any, status: Any, reason: str) -> None:
        if int(ok):
            return
        if not status:
            raise WorkflowNotFound(workflow_id)
        raise WorkflowConflict(workflow_id, str(status), reason)

    async def waiting_steps(self) -> dict[str, int]:
        """Steps waiting on parents, per queue (summed over its partitions): the metrics gauge."""
        parts = await self._partitions()
        pipe = self.broker.redis.pipeline(transaction=False)
        for q in parts:
            pipe.zcard(q.keys.index_status(TaskStatus.WAITING))
        out: dict[str, int] = {}
        for q, n in zip(parts, await pipe.execute(), strict=True):
            out[q.keys.queue] = out.get(q.keys.queue, 0) + int(n)
        return out


def workflow_data(workflow_id: str, queue: str, raw: dict[str, str]) -> dict[str, Any]:
    """A workflow's webhook ``data``: its summary as GET /api/workflows lists it (JSON-ready)."""
    summary = WorkflowSummary(**_summary(workflow_id, queue, raw))
    return summary.model_dump(mode="json")


def workflow_body(event: str, data: dict[str, Any], at_ms: int) -> bytes:
    """``{"type": "workflow.<status>", "timestamp": <ISO 8601>, "data": {workflow}}``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms / 1000)) + f".{at_ms % 1000:03d}Z"
    return orjson.dumps({"type": event, "timestamp": stamp, "data": data})
