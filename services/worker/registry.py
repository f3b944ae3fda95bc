"""Handler registry: ``@handler("name")`` on async or sync functions.

A handler takes the task's payload, and optionally a second parameter that receives a
:class:`TaskContext`. Its return value (JSON-serialisable) becomes the task's result.
Sync handlers run in a thread so they never block the event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streamq.services.worker.control import Control
from streamq.services.worker.jobs import Delivery


@dataclass(frozen=True, slots=True)
class TaskContext:
    task_id: str
    type: str
    queue: str
    attempt: int
    max_retries: int
    priority: int
    enqueued_at: datetime | None = None  # when it was last put on its stream: submitted, or due (delayed, retried)
    # a workflow step's parents' results by step name (docs/workflows.md); empty for other tasks
    parents: dict[str, Any] = field(default_factory=dict)
    _control: Control | None = field(default=None, repr=False, compare=False)
    _delivery: Delivery | None = field(default=None, repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """True once a cancel of this running task was requested (POST /api/tasks/{id}/cancel): a sync
        handler polls it and returns (an async handler gets ``CancelledError`` instead)."""
        return self._control is not None and self._control.cancelled(self.task_id)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress: ``fraction`` in [0, 1], ``message`` at most 200 characters. Cheap to call
        often: the latest report of each task is written at most every 0.1 s (ValueError if out of range)."""
        if self._control is not None and self._delivery is not None:
            self._control.report(self._delivery, fraction, message)


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    func: Callable[..., Any]
    is_async: bool
    wants_context: bool

    async def __call__(self, payload: Any, ctx: TaskContext | None) -> Any:
        """Run the function; ``ctx`` is passed (and needed) only when it ``wants_context``."""
        args = (payload, ctx) if self.wants_context else (payload,)
        if self.is_async:
            return await self.func(*args)
        return await asyncio.to_thread(self.func, *args)


class Registry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, func: Callable[..., Any]) -> None:
        if name in self._handlers and self._handlers[name].func is not func:
            raise ValueError(f"handler {name!r} is registered twice")
        params = [
            p
            for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        self._handlers[name] = Handler(name, func, inspect.iscoroutinefunction(func), len(params) >= 2)

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)


REGISTRY = Registry()


def handler(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func`` as the handler of task type ``name``."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY.register(name, func)
        return func

    return decorate


def load_modules(paths: list[str]) -> None:
    """Import the user's handler modules (``STREAMQ_HANDLERS``); their decorators register them."""
    for path in paths:
        try:
            importlib.import_module(path)
        except ImportError as error:
            raise SystemExit(f"streamq: invalid setting STREAMQ_HANDLERS: cannot import {path!r}: {error}") from None
