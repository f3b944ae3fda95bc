"""The client's typed errors: one class per kind of answer a caller handles differently.

Every error derives from :class:`StreamqError` and carries the HTTP status (``None`` when no answer
came) and the api's ``detail``. Over the direct Redis transport the errors are the same, with the status
the api would have answered (404, 409, 422, 503)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamq.models import Task


class StreamqError(Exception):
    """Any error the client raises."""

    def __init__(self, message: str, *, status_code: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class NotFound(StreamqError):
    """404: no such task, queue or schedule."""


class Conflict(StreamqError):
    """409: the task is not in a state that allows the change (``status`` names the one it is in), or a
    schedule's name is taken."""

    def __init__(self, message: str, *, status_code: int | None = 409, detail: Any = None, status: str | None = None):
        super().__init__(message, status_code=status_code, detail=detail)
        self.status = status


class Unauthorized(StreamqError):
    """401: the api needs a valid key (``api_key=`` or ``STREAMQ_API_KEY``)."""


class Forbidden(StreamqError):
    """403: the key lacks the scope the call needs (submit, read or admin)."""


class InvalidTask(StreamqError):
    """422 (or another 4xx about the request): ``errors`` is the api's list of field errors, each with
    ``loc`` (where), ``msg`` (the rule) and ``type``."""

    def __init__(self, message: str, *, status_code: int | None = 422, detail: Any = None) -> None:
        super().__init__(message, status_code=status_code, detail=detail)
        self.errors: list[dict[str, Any]] = (
            [e for e in detail if isinstance(e, dict)] if isinstance(detail, list) else []
        )


class RateLimited(StreamqError):
    """429 after the client's retries: ``retry_after`` is the api's Retry-After in seconds (or None)."""

    def __init__(self, message: str, *, status_code: int | None = 429, detail: Any = None, retry_after: float | None):
        super().__init__(message, status_code=status_code, detail=detail)
        self.retry_after = retry_after


class Unavailable(StreamqError):
    """The api is out of reach, or answered 502/503/504 after the client's retries (Redis out of reach or
    refusing writes: ``detail`` names the cause)."""

    def __init__(
        self, message: str, *, status_code: int | None = None, detail: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code, detail=detail)
        self.retry_after = retry_after


class ApiOnly(StreamqError):
    """The call needs the api (admin routes, schedules, queues, workers, retry, delete): the client uses
    the direct Redis transport, which makes only submit, submit_many, get, wait, cancel, list and stats."""


class Timeout(StreamqError, TimeoutError):
    """A wait ended before the task did (``task`` is its last state), or a request got no answer in time
    (``task`` is None)."""

    def __init__(self, message: str, *, task: Task | None = None) -> None:
        super().__init__(message)
        self.task = task
