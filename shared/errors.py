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
