"""streamq: a distributed task queue on Redis Streams.

Producers use :class:`Client` / :class:`AsyncClient` (needs only httpx and pydantic; the direct Redis
transport, ``redis_url=...``, needs the ``redis`` extra and is imported only when asked for). Handler modules
import ``handler``, ``TaskContext``, ``Retry`` and ``Permanent`` from here; those come from the worker
and are loaded on first use, so importing the client never loads the server stack."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamq.client import AsyncClient, Client
from streamq.errors import (
    ApiOnly,
    Conflict,
    Forbidden,
    InvalidTask,
    NotFound,
    RateLimited,
    StreamqError,
    Timeout,
    Unauthorized,
    Unavailable,
)
from streamq.models import Queue, Schedule, Stats, Task, TaskStatus, Worker

if TYPE_CHECKING:
    from streamq.services.worker.registry import TaskContext, handler
    from streamq.shared.errors import Permanent, Retry

__version__ = "0.1.0"
_WORKER_NAMES = {  # the handler API: name -> the module that defines it
    "handler": "streamq.services.worker.registry",
    "TaskContext": "streamq.services.worker.registry",
    "Retry": "streamq.shared.errors",
    "Permanent": "streamq.shared.errors",
}

__all__ = [
    "ApiOnly",
    "AsyncClient",
    "Client",
    "Conflict",
    "Forbidden",
    "InvalidTask",
    "NotFound",
    "Permanent",
    "Queue",
    "RateLimited",
    "Retry",
    "Schedule",
    "Stats",
    "StreamqError",
    "Task",
    "TaskContext",
    "TaskStatus",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "Worker",
    "handler",
]


def __getattr__(name: str) -> Any:
    """The handler API, imported from the worker when a handler module first asks for it."""
    module = _WORKER_NAMES.get(name)
    if module is not None:
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'streamq' has no attribute {name!r}")
