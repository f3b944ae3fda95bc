"""The project's exceptions."""

from __future__ import annotations


class StreamqError(Exception):
    """Base class of every streamq error."""


class NotFound(StreamqError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class Conflict(StreamqError):
    """The task's current status does not allow the operation."""

    def __init__(self, task_id: str, status: str, reason: str) -> None:
        super().__init__(f"task {task_id} is {status}: {reason}")
        self.task_id = task_id
        self.status = status


class Retry(StreamqError):
    """Raised by a handler to be retried after ``after`` seconds (counts as an attempt)."""

    def __init__(self, after: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.after = after


class Permanent(StreamqError):
    """Raised by a handler whose failure must not be retried."""


class NotDurable(StreamqError):
    """A write the server applied but fewer replicas than ``STREAMQ_DURABLE_SUBMIT`` asks confirmed in time."""

    def __init__(self, task_ids: list[str], wanted: int, acked: int, timeout_ms: int) -> None:
        super().__init__(
            f"submission not confirmed by {wanted} replica(s) within {timeout_ms} ms (only {acked} did; "
            f"STREAMQ_DURABLE_SUBMIT=replicas:{wanted},{timeout_ms}): the tasks were written to the master and "
            "may still exist and run; check them by id, or submit again with the same idempotency key"
        )
        self.task_ids = task_ids
        self.wanted = wanted
        self.acked = acked


def not_durable_body(error: NotDurable) -> dict[str, object]:
    """The api's 503 body for an unconfirmed submission (the route and the fast path answer alike)."""
    return {"detail": str(error), "tasks": error.task_ids}
