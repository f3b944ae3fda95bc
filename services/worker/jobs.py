"""The records a worker passes around: a delivered entry, a started job, an outcome."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamq.shared.keys import KeySchema


@dataclass(frozen=True, slots=True)
class Delivery:
    """A stream entry delivered to this consumer."""

    priority: int  # of the stream it was read from
    msg_id: str
    task_id: str
    keys: KeySchema | None = None  # the partition it was read from (None: the worker's own queue keys)

    @property
    def ref(self) -> str:
        """Unique among this worker's deliveries: entry ids repeat across streams (each stream numbers
        its own entries by the millisecond), so the partition and priority are part of it."""
        return f"{self.keys.tag if self.keys else ''}/{self.priority}/{self.msg_id}"


@dataclass(slots=True)
class Job:
    """A task this worker started (start.lua marked it processing)."""

    delivery: Delivery
    type: str
    payload_json: str
    timeout_s: float | None
    attempt: int
    max_retries: int
    retry_backoff_s: float | None
    due_ms: int
    priority: int
    traceparent: str = ""  # the trace context the api stored with the task ('' when none)
    tracestate: str = ""
    parents_json: str = ""  # a workflow step's parents' results ({"name": result}, JSON); '' otherwise

    @classmethod
    def bare(cls, delivery: Delivery) -> Job:
        """A job known only by its delivery: enough to record an outcome for it (finish.lua reads the rest)."""
        return cls(delivery, "", "", None, 0, 0, None, 0, delivery.priority)

    @classmethod
    def from_reply(cls, delivery: Delivery, reply: list[str]) -> Job:
        _id, task_type, payload, timeout, attempts, max_retries, backoff, due, priority, traceparent, tracestate = (
            reply[:11]
        )
        return cls(  # positional: keywords cost a tenth of building a job
            delivery,
            task_type,
            payload,
            float(timeout) if timeout else None,
            int(attempts),
            int(max_retries),
            float(backoff) if backoff else None,
            int(due),
            int(priority),
            traceparent,
            tracestate,
            reply[11] if len(reply) > 11 else "",
        )


@dataclass(slots=True)
class Outcome:
    """What finish.lua records: completed with a result, or failed with an error and retry delay."""

    job: Job
    completed: bool
    value: str  # result JSON, or error text
    delay_ms: int = -1  # retry delay; -1 = never retry
    history: str = ""  # JSON object appended to the task's error history
    status: str = field(default="")  # set once recorded: completed / scheduled / failed / lost / stale
    kind: str = ""  # finish.lua's outcome when neither completed nor failed: unhandled (given back), cancelled
