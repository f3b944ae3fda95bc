"""What :class:`streamq.Client` and :class:`streamq.AsyncClient` share: each api call as a :class:`Call`
(the request and how its answer maps to a value or an error), the settings read from the environment,
and the retry policy. The two clients only send calls and sleep, each in its own I/O style.

A call the direct transport can make (streamq/direct.py) also names the :class:`streamq.direct.Engine`
method that makes it (``Call.direct``); a call without one needs the api (:class:`ApiOnly`)."""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
from pydantic import TypeAdapter

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
    from streamq.direct import Engine, Lane

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 10.0
BATCH_LIMIT = 1000  # the api's most tasks per POST /api/tasks/batch
MAX_WAIT_S = 60.0  # the api's longest long-poll (GET /api/tasks/{id}?wait=S)
PAGE_SIZE = 100  # tasks per GET /api/tasks page when listing
RETRIED = frozenset({429, 502, 503, 504})  # not applied, or safe to send again (a submit carries a key)
USER_AGENT = "streamq-python/0.1.0"


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One api request and the mapping of its successful answer to a value."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    body: Any = None
    read_timeout_s: float | None = None  # a long-poll: the answer may take this long, plus the client's timeout
    direct: Callable[[Engine], Awaitable[T]] | None = None  # the same call over the direct transport
    # the blocking client's form of ``direct``, made on the caller's thread (streamq.direct.Lane)
    lane: Callable[[Lane], T] | None = None


@dataclass(frozen=True, slots=True)
class Transport:
    """Which transport a client uses: the api at ``url`` (``redis_url`` None), or Redis directly."""

    url: str | None
    redis_url: str | None


def transport(url: str | None, redis_url: str | None) -> Transport:
    """An explicit ``url`` or ``redis_url`` (not both); else ``STREAMQ_URL`` (the api wins when both
    variables are set: the services' own ``STREAMQ_REDIS_URL`` is often in a producer's environment too);
    else ``STREAMQ_REDIS_URL``; else the local api."""
    if url and redis_url:
        raise ValueError("pass url (the api) or redis_url (direct to Redis), not both")
    if url or redis_url:
        return Transport(url, redis_url)
    env_url = os.environ.get("STREAMQ_URL") or None
    env_redis = os.environ.get("STREAMQ_REDIS_URL") or None
    if env_url is None and env_redis is not None:
        return Transport(None, env_redis)
    return Transport(env_url, None)


def api_only(call: Call[Any]) -> ApiOnly:
    return ApiOnly(
        f"{call.method} {call.path} needs the api: the direct Redis transport (redis_url=..., or "
        "STREAMQ_REDIS_URL without STREAMQ_URL) makes only submit, submit_many, get, wait, cancel, list and "
        "stats; use a client with url=... (the api transport) for this call"
    )


@dataclass(frozen=True, slots=True)
class Config:
    url: str
    api_key: str | None
    timeout_s: float
    retries: int
    headers: dict[str, str] = field(default_factory=dict)


def config(url: str | None, api_key: str | None, timeout: float, retries: int) -> Config:
    """The explicit values, else ``STREAMQ_URL`` and ``STREAMQ_API_KEY``, else the local default url."""
    base = (url or os.environ.get("STREAMQ_URL") or DEFAULT_URL).rstrip("/")
    key = api_key if api_key is not None else (os.environ.get("STREAMQ_API_KEY") or None)
    headers = {"User-Agent": USER_AGENT}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return Config(base, key, timeout, retries, headers)


# --- the retry policy ----------------------------------------------------------------------------
def backoff_s(attempt: int, response: httpx.Response | None) -> float:
    """How long to wait before attempt ``attempt + 1``: the api's Retry-After when it sent one (at most
    60 s), else 0.2 s doubling per attempt up to 5 s, with jitter so many clients do not retry together."""
    after = retry_after(response) if response is not None else None
    if after is not None:
        return min(after, 60.0)
    return min(0.2 * 2.0**attempt, 5.0) * random.uniform(0.5, 1.0)  # jitter


def should_retry(attempt: int, retries: int, response: httpx.Response | None) -> bool:
    """Another attempt after a 429/502/503/504 answer, or no connection at all (``response`` None: nothing
    was sent), while attempts remain."""
    return attempt < retries and (response is None or response.status_code in RETRIED)


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- answers to values or errors ------------------------------------------------------------------
def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return body.get("detail", body) if isinstance(body, dict) else body


def _message(response: httpx.Response, detail: Any) -> str:
    where = f"{response.request.method} {response.request.url.path}"
    if isinstance(detail, list):
        rules = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', '')}" for e in detail if isinstance(e, dict)
        )
        return f"{where} answered {response.status_code}: {rules}"
    return f"{where} answered {response.status_code}: {detail}"


def error_for(response: httpx.Response) -> StreamqError:
    """The typed error of a non-2xx answer."""
    code = response.status_code
    detail = _detail(response)
    message = _message(response, detail)
    if code == 401:
        return Unauthorized(message, status_code=code, detail=detail)
    if code == 403:
        return Forbidden(message, status_code=code, detail=detail)
    if code == 404:
        return NotFound(message, status_code=code, detail=detail)
    if code == 409:
        body = response.json() if "json" in response.headers.get("content-type", "") else {}
        status = body.get("status") if isinstance(body, dict) else None
        return Conflict(message, status_code=code, detail=detail, status=status)
    if code == 429:
        return RateLimited(message, status_code=code, detail=detail, retry_after=retry_after(response))
    if code in (502, 503, 504):
        return Unavailable(message, status_code=code, detail=detail, retry_after=retry_after(response))
    if 400 <= code < 500:
        return InvalidTask(message, status_code=code, detail=detail)
    return StreamqError(message, status_code=code, detail=detail)


def outcome(call: Call[T], response: httpx.Response) -> T:
    """The call's value, or its typed error raised."""
    if response.is_success:
        return call.parse(response)
    raise error_for(response)


def _model(model: type[Any]) -> Callable[[httpx.Response], Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    return lambda response: adapter.validate_json(response.content)


_task = _model(Task)
_tasks = _model(list[Task])


def _none(_response: httpx.Response) -> None:
    return None


# --- request bodies ------------------------------------------------------------------------------
def new_idempotency_key() -> str:
    """One per submitted task: a retry of the same call sends it again, so the api makes the task once."""
    return f"sq-{os.urandom(16).hex()}"  # 128 random bits, as a uuid4's hex (a fifth of its cost)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("scheduled_for must include a time zone (e.g. datetime.now(UTC))")
    return value.isoformat()


def task_body(
    type: str,
    payload: Any = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    delay: float | timedelta | None = None,
    scheduled_for: datetime | None = None,
    max_retries: int | None = None,
    timeout_s: float | None = None,
    retry_backoff_s: float | None = None,
    webhook: str | None = None,
    idempotency_key: str | None = None,
    keep_s: int | None = None,
    unique: dict[str, Any] | None = None,
    debounce: dict[str, Any] | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """A POST /api/tasks body. ``delay`` (seconds or a timedelta) becomes ``scheduled_for`` = now + delay,
    by this machine's clock. Without an ``idempotency_key`` one is made, so a retried submit never makes
    a second task."""
    if delay is not None and scheduled_for is not None:
        raise ValueError("pass delay or scheduled_for, not both")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if seconds < 0:
            raise ValueError("delay must be at least 0 seconds")
        scheduled_for = datetime.now(UTC) + timedelta(seconds=seconds)
    body: dict[str, Any] = {"type": type, "payload": payload}
    # the options given, in this order (one test each: a submit_many builds a body per task)
    if queue is not None:
        body["queue"] = queue
    if priority is not None:
        body["priority"] = priority
    if scheduled_for is not None:
        body["scheduled_for"] = _iso(scheduled_for)
    if max_retries is not None:
        body["max_retries"] = max_retries
    if timeout_s is not None:
        body["timeout_s"] = timeout_s
    if retry_backoff_s is not None:
        body["retry_backoff_s"] = retry_backoff_s
    if webhook is not None:
        body["webhook"] = webhook
    if keep_s is not None:
        body["keep_s"] = keep_s
    if unique is not None:
        body["unique"] = unique
    if debounce is not None:
        body["debounce"] = debounce
    if group is not None:
        body["group"] = group
    body["idempotency_key"] = idempotency_key or new_idempotency_key()
    return body


def batches(tasks: Iterable[Mapping[str, Any]], *, make_keys: bool = True) -> list[list[dict[str, Any]]]:
    """Each task's body (``task_body``'s keywords, ``type`` required), in order, BATCH_LIMIT a batch. The
    idempotency keys the call makes come from one read of the system's randomness (128 bits each, as
    :func:`new_idempotency_key`'s), not one read per task. ``make_keys=False`` (the direct transport,
    which guards a retried batch by the task ids it made for it instead): only the keys given."""
    specs = list(tasks)
    fresh = os.urandom(16 * len(specs)).hex() if make_keys else ""
    bodies = [
        _with_key(spec, f"sq-{fresh[32 * i : 32 * i + 32]}" if make_keys else None) for i, spec in enumerate(specs)
    ]
    return [bodies[i : i + BATCH_LIMIT] for i in range(0, len(bodies), BATCH_LIMIT)]


_NO_KEY = "\0"  # what _with_key gives task_body for a task that is to carry no key: removed from the body


def _with_key(spec: Mapping[str, Any], made: str | None) -> dict[str, Any]:
    """``task_body`` of ``spec`` with its own idempotency key, else ``made``, else none."""
    body = task_body(**{**spec, "idempotency_key": spec.get("idempotency_key") or made or _NO_KEY})
    if body["idempotency_key"] is _NO_KEY:
        del body["idempotency_key"]
    return body


def _queue_param(queue: str | None) -> dict[str, Any] | None:
    return {"queue": queue} if queue is not None else None


# --- the calls -----------------------------------------------------------------------------------
def submit(body: dict[str, Any]) -> Call[Task]:
    return Call(
        "POST",
        "/api/tasks",
        _task,
        body=body,
        direct=lambda engine: engine.submit(body),
        lane=lambda lane: lane.submit(body),
    )


@dataclass(frozen=True, slots=True)
class Batch:
    """POST /api/tasks/batch's answer: the tasks in order, how many were new, how many an earlier
    task with the same idempotency key answered."""

    tasks: list[Task]
    created: int
    duplicates: int


_TASK_LIST: TypeAdapter[list[Task]] = TypeAdapter(list[Task])


def submit_batch(bodies: list[dict[str, Any]], ids: list[str] | None = None) -> Call[Batch]:
    """POST /api/tasks/batch (``ids``: the direct transport's, made for the batch before its first attempt)."""

    def parse(response: httpx.Response) -> Batch:
        body = response.json()
        return Batch(_TASK_LIST.validate_python(body["tasks"]), int(body["created"]), int(body["duplicates"]))

    return Call(
        "POST",
        "/api/tasks/batch",
        parse,
        body={"tasks": bodies},
        direct=lambda engine: engine.submit_batch(bodies, ids),
        lane=lambda lane: lane.submit_batch(bodies, ids),
    )


def get(task_id: str, queue: str | None = None, wait_s: float | None = None) -> Call[Task]:
    """GET a task; with ``wait_s`` the api answers once it is done or after that many seconds."""
    params = _queue_param(queue) or {}
    if wait_s is not None:
        params["wait"] = round(min(max(wait_s, 0.001), MAX_WAIT_S), 3)
    return Call(
        "GET",
        f"/api/tasks/{task_id}",
        _task,
        params=params or None,
        read_timeout_s=wait_s,
        direct=lambda engine: engine.get(task_id, queue, None if wait_s is None else min(wait_s, MAX_WAIT_S)),
        lane=(lambda lane: lane.get(task_id, queue)) if wait_s is None else None,  # a wait listens on the loop
    )


def cancel(task_id: str, queue: str | None = None) -> Call[Task]:
    return Call(
        "POST",
        f"/api/tasks/{task_id}/cancel",
        _task,
        params=_queue_param(queue),
        direct=lambda engine: engine.cancel(task_id, queue),
    )


def retry(task_id: str, queue: str | None = None) -> Call[Task]:
    return Call("POST", f"/api/tasks/{task_id}/retry", _task, params=_queue_param(queue))


def delete(task_id: str, queue: str | None = None) -> Call[None]:
    return Call("DELETE", f"/api/tasks/{task_id}", _none, params=_queue_param(queue))


def retry_failed(queue: str | None = None) -> Call[int]:
    return Call("POST", "/api/tasks/retry-failed", lambda r: int(r.json()["revived"]), params=_queue_param(queue))


def list_page(
    cursor: str | None,
    limit: int,
    *,
    status: TaskStatus | str | None = None,
    type: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
) -> Call[tuple[list[Task], str | None]]:
    """One page of GET /api/tasks (newest first) and the cursor of the next (None at the end)."""
    params = {"status": status, "type": type, "queue": queue, "priority": priority, "cursor": cursor, "limit": limit}

    def parse(response: httpx.Response) -> tuple[list[Task], str | None]:
        page = response.json()
        return TypeAdapter(list[Task]).validate_python(page["tasks"]), page.get("next_cursor")

    filters = {"status": status, "type": type, "queue": queue, "priority": priority}
    return Call(
        "GET",
        "/api/tasks",
        parse,
        params={k: str(v) for k, v in params.items() if v is not None},
        direct=lambda engine: engine.list_page(cursor, limit, filters),
    )


def page_limit(remaining: int | None) -> int:
    return PAGE_SIZE if remaining is None else max(1, min(PAGE_SIZE, remaining))


def stats(queue: str | None = None) -> Call[Stats]:
    return Call("GET", "/api/stats", _model(Stats), params=_queue_param(queue), direct=lambda e: e.stats(queue))


def workers() -> Call[list[Worker]]:
    return Call("GET", "/api/workers", _model(list[Worker]))


def queues() -> Call[list[Queue]]:
    return Call("GET", "/api/queues", _model(list[Queue]))


def pause_queue(name: str, paused: bool) -> Call[Queue]:
    return Call("POST", f"/api/queues/{name}/{'pause' if paused else 'resume'}", _model(Queue))


def schedule_body(
    name: str, cron: str, type: str, payload: Any = None, *, timezone: str = "UTC", **task: Any
) -> dict[str, Any]:
    """A POST /api/schedules body: ``task`` takes queue, priority, max_retries, timeout_s, webhook..."""
    template = {"type": type, "payload": payload, **{k: v for k, v in task.items() if v is not None}}
    return {"name": name, "cron": cron, "timezone": timezone, "task": template}


def create_schedule(body: dict[str, Any]) -> Call[Schedule]:
    return Call("POST", "/api/schedules", _model(Schedule), body=body)


def schedules() -> Call[list[Schedule]]:
    return Call("GET", "/api/schedules", _model(list[Schedule]))


def schedule(name: str) -> Call[Schedule]:
    return Call("GET", f"/api/schedules/{name}", _model(Schedule))


def delete_schedule(name: str) -> Call[None]:
    return Call("DELETE", f"/api/schedules/{name}", _none)


def pause_schedule(name: str, paused: bool) -> Call[Schedule]:
    return Call("POST", f"/api/schedules/{name}/{'pause' if paused else 'resume'}", _model(Schedule))


def timeouts(config: Config, call: Call[Any]) -> httpx.Timeout:
    """The client's timeout; a long-poll's read waits its wait on top."""
    if call.read_timeout_s is None:
        return httpx.Timeout(config.timeout_s)
    return httpx.Timeout(config.timeout_s, read=config.timeout_s + call.read_timeout_s)


def request_args(config: Config, call: Call[Any]) -> dict[str, Any]:
    """httpx's ``request(...)`` keywords of a call (the same for the sync and the async client)."""
    return {
        "method": call.method,
        "url": call.path,
        "params": call.params,
        "json": call.body,
        "timeout": timeouts(config, call),
    }


def direct_call(call: Call[T]) -> Callable[[Engine], Awaitable[T]]:
    """The call's direct form; :class:`ApiOnly` when only the api makes it."""
    if call.direct is None:
        raise api_only(call)
    return call.direct


def direct_timeout_s(config: Config, call: Call[Any]) -> float:
    """A direct call's bound: the client's timeout, a wait's wait on top (as :func:`timeouts`)."""
    return config.timeout_s + (call.read_timeout_s or 0.0)


def direct_backoff_s(attempt: int, error: Unavailable) -> float:
    """The wait before retrying a direct call that met Redis out of reach or refusing writes (what the
    api answers 503): its Retry-After, else :func:`backoff_s`'s back-off."""
    if error.retry_after is not None:
        return min(error.retry_after, 60.0)
    return backoff_s(attempt, None)


def wait_s(deadline: float, now: float) -> float | None:
    """The next long-poll's wait for a wait ending at ``deadline`` (None once it has passed)."""
    remaining = deadline - now
    return min(remaining, MAX_WAIT_S) if remaining > 0 else None


def transport_error(config: Config, error: httpx.TransportError) -> StreamqError:
    """No answer: a timeout is :class:`Timeout`, anything else (refused, reset) :class:`Unavailable`."""
    if isinstance(error, httpx.TimeoutException):
        return Timeout(f"no answer from the streamq api at {config.url} within {config.timeout_s:g} s ({error!r})")
    return Unavailable(f"cannot reach the streamq api at {config.url}: {error!r}")


def not_sent(error: httpx.TransportError) -> bool:
    """The request never reached the api (no connection): sending it again is always safe."""
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)


def wait_timeout(task: Task, timeout: float) -> Timeout:
    return Timeout(f"task {task.id} is still {task.status.value} after {timeout:g} s", task=task)


class Pager:
    """Follows GET /api/tasks's cursor: :meth:`call` is the next page's call (None when done), :meth:`take`
    the tasks of its answer to hand out (at most ``limit`` in all)."""

    def __init__(self, limit: int | None, filters: dict[str, Any]) -> None:
        if limit is not None and limit < 0:
            raise ValueError("limit must be at least 0")
        self.remaining = limit
        self.filters = filters
        self.cursor: str | None = None
        self.ended = False

    def call(self) -> Call[tuple[list[Task], str | None]] | None:
        if self.ended or self.remaining == 0:
            return None
        return list_page(self.cursor, page_limit(self.remaining), **self.filters)

    def take(self, page: tuple[list[Task], str | None]) -> list[Task]:
        tasks, self.cursor = page
        self.ended = self.cursor is None
        if self.remaining is not None:
            tasks = tasks[: self.remaining]
            self.remaining -= len(tasks)
        return tasks
