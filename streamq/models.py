"""The client's typed answers. Its own pydantic models, not the server's (``streamq.shared.models`` needs the
server's dependencies): tests/client/test_models.py checks that each covers every field of the api's
model, so the two cannot drift apart. Unknown fields are kept (``extra="allow"``), so a newer api does
not break an older client."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TaskStatus(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    WAITING = "waiting"  # a workflow step whose parents have not all completed
    SKIPPED = "skipped"  # a workflow step that never runs: an ancestor failed or was cancelled


TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class AttemptError(Answer):
    attempt: int
    error: str
    at: datetime


class Task(Answer):
    """A task as the api shows it."""

    id: str
    queue: str
    group: str | None = None  # docs/groups-and-limits.md
    type: str
    payload: Any = None
    priority: int
    max_retries: int
    status: TaskStatus
    attempts: int = 0
    scheduled_for: datetime | None = None
    webhook: str | None = None
    timeout_s: float | None = None
    retry_backoff_s: float | None = None
    idempotency_key: str | None = None
    unique: dict[str, Any] | None = None  # {"key", "until", "ttl_s"} (docs/unique-and-debounce.md)
    debounce: dict[str, Any] | None = None  # {"key", "window_s"}
    debounced: bool = False  # a submit's answer that updated a waiting debounced task (200)
    keep_s: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    result: Any = None
    error: str | None = None
    worker: str | None = None
    history: list[AttemptError] = Field(default_factory=list)
    webhook_status: str | None = None
    progress: float | None = None  # 0..1, as the handler last reported it
    progress_message: str | None = None
    workflow: str | None = None  # the workflow this task is a step of
    step: str | None = None  # its step name there
    cancel_requested: bool = False  # a running task asked to stop (the cancel answered 202)

    @property
    def done(self) -> bool:
        """Completed, failed or cancelled: it will not change again by itself."""
        return self.status in TERMINAL


class Stats(Answer):
    queue: str
    total: int
    pending: int
    scheduled: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    submitted_total: int
    completed_total: int
    failed_total: int
    retried_total: int
    dead_letter: int
    queues: list[str] = Field(default_factory=list)


class Worker(Answer):
    id: str
    host: str
    pid: int
    concurrency: int
    in_flight: int
    processed: int
    started_at: datetime
    last_heartbeat: datetime
    handlers: list[str]
    queue: str
    queues: list[str] = Field(default_factory=list)


class Queue(Answer):
    name: str
    partitions: int
    paused: bool
    stats: Stats
    depth: dict[int, int]
    dead_letter: int
    workers: list[str]
    # what the queue keeps of finished tasks and dead letters: {kind: {"age_s": ..., "count": ...}}
    retention: dict[str, dict[str, int | None]] = Field(default_factory=dict)
    # every group's default limits (docs/groups-and-limits.md): rate is {"limit": ..., "per_s": ...}
    group_concurrency: int | None = None
    group_rate: dict[str, float] | None = None


class Schedule(Answer):
    name: str
    queue: str
    cron: str
    timezone: str
    task: dict[str, Any]  # the template each firing submits
    paused: bool
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_task_id: str | None = None
    fired_total: int = 0
    created_at: datetime


class WorkflowStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkflowStep(Answer):
    """One step of a workflow (docs/workflows.md)."""

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


class WorkflowSummary(Answer):
    """A workflow as a list page shows it (no steps)."""

    id: str
    name: str
    queue: str
    status: WorkflowStatus
    created_at: datetime
    completed_at: datetime | None = None
    steps_total: int = 0
    steps_open: int = 0

    @property
    def done(self) -> bool:
        return self.status != WorkflowStatus.RUNNING


class Workflow(WorkflowSummary):
    """A workflow with each step's state."""

    webhook: str | None = None
    idempotency_key: str | None = None
    steps: dict[str, WorkflowStep] = Field(default_factory=dict)
    on_failure: WorkflowStep | None = None
