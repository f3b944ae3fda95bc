"""Wire and domain types: what a client sends (TaskCreate), what it gets back (TaskPublic)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from streamq.shared.jsondepth import MAX_PAYLOAD_DEPTH, text_deeper_than
from streamq.shared.redaction import redact_payload

MAX_PAYLOAD_BYTES = 256 * 1024
MIN_PRIORITY = 1
MAX_PRIORITY = 5
DEFAULT_PRIORITY = 3
MAX_KEEP_S = 366 * 24 * 3600  # a task's keep_s; STREAMQ_RESULT_TTL_S and its queue's age bound cap it further
PRIORITIES = tuple(range(MAX_PRIORITY, MIN_PRIORITY - 1, -1))  # highest first
BUILTIN_TYPES = ("noop", "echo", "sleep", "fail", "email", "http")


class TaskStatus(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    WAITING = "waiting"  # a workflow step whose parents have not all completed (docs/workflows.md)
    SKIPPED = "skipped"  # a workflow step that never runs: an ancestor failed or was cancelled


TERMINAL: frozenset[TaskStatus] = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
RETRYABLE: frozenset[TaskStatus] = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})
CANCELLABLE: frozenset[TaskStatus] = frozenset({TaskStatus.PENDING, TaskStatus.SCHEDULED})


class EventType(StrEnum):
    CREATED = "created"
    SCHEDULED = "scheduled"
    STARTED = "started"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD_LETTERED = "dead_lettered"
    DELETED = "deleted"
    PROMOTED = "promoted"  # a scheduled task reached its due time and is on its stream
    RESCHEDULED = "rescheduled"
    REQUEUED = "requeued"  # its stream entry was lost (deleted while pending): a fresh entry
    CANCEL_REQUESTED = "cancel_requested"  # a running task was asked to stop (it ends cancelled)
    PROGRESS = "progress"  # the handler reported progress (at most about 10 a second per task)
    GIVEN_BACK = "given_back"  # the worker that read it has no handler for its type: waits for one that has
    RELEASED = "released"  # a workflow step's last parent completed: it is on its stream
    SKIPPED = "skipped"  # a workflow step will never run (an ancestor failed or was cancelled)
    HELD = "held"  # its group's (or type's) rate holds it back until a time (docs/groups-and-limits.md)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)  # every 10-bit value as two digits


@functools.lru_cache(maxsize=8)
def _time_part(ms: int) -> str:
    """The first 10 digits (the 48-bit time, 2 leading zero bits): shared by every id of one ms."""
    return "".join([_PAIRS[(ms >> shift) & 1023] for shift in (40, 30, 20, 10, 0)])


_LAST_ID = [0, 0]  # (ms, random part) of the id made last in this process
# ids are made on more than one thread in a producer process (the blocking client submits on its
# caller's thread, streamq/direct.py): the read-modify-write of _LAST_ID is held by this lock
_ID_LOCK = threading.RLock()


def _forked() -> None:
    """A forked child starts its ids afresh: continuing its parent's random part, it would make the same
    ids as the parent within a millisecond; and a lock held by another thread at the fork stays held."""
    global _ID_LOCK
    _ID_LOCK = threading.RLock()
    _LAST_ID[0] = _LAST_ID[1] = 0


os.register_at_fork(after_in_child=_forked)


def new_task_id(now_ms: int | None = None) -> str:
    """A ULID: 48-bit millisecond time then 80 random bits, Crockford base32, sortable by time.
    Monotonic within a process (as ULID's monotonic mode): an id made in the same millisecond as the
    previous one (or an earlier one) takes the previous random part plus one, so ids made one after
    another sort in the order they were made."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _ID_LOCK:
        return _new_id(ms)


def _new_id(ms: int) -> str:
    last_ms, last_rand = _LAST_ID
    if ms > last_ms:
        rand = int.from_bytes(os.urandom(10), "big")
    elif last_rand + 1 < 1 << 80:
        ms, rand = last_ms, last_rand + 1
    else:  # the random part ran out within one millisecond: borrow the next one
        ms, rand = last_ms + 1, int.from_bytes(os.urandom(10), "big")
    _LAST_ID[0], _LAST_ID[1] = ms, rand
    return _time_part(ms) + "".join([_PAIRS[(rand >> shift) & 1023] for shift in (70, 60, 50, 40, 30, 20, 10, 0)])


def new_task_ids(count: int, now_ms: int) -> list[str]:
    """The ``count`` ids that ``count`` calls of ``new_task_id(now_ms)`` make, one after another (the
    first as that call, each next one in the same millisecond with the random part plus one), without
    the per-id work: the 10 time digits and the 12 random digits above the last 20 bits are joined once
    per 2^20 ids instead of once per id (a 1,000-task batch: about 3x faster)."""
    if count <= 0:
        return []
    with _ID_LOCK:
        return _new_ids(count, now_ms)


def _new_ids(count: int, now_ms: int) -> list[str]:
    ids = [new_task_id(now_ms)]
    ms, rand = _LAST_ID
    end = rand + count  # the random parts still to make: rand + 1 .. end - 1
    if end > 1 << 80:  # they run out within the millisecond: new_task_id borrows the next one
        return ids + [new_task_id(now_ms) for _ in range(count - 1)]
    time_part = _time_part(ms)
    head_of, head = -1, ""
    for value in range(rand + 1, end):
        if value >> 20 != head_of:
            head_of = value >> 20
            head = time_part + "".join([_PAIRS[(value >> shift) & 1023] for shift in (70, 60, 50, 40, 30, 20)])
        ids.append(head + _PAIRS[(value >> 10) & 1023] + _PAIRS[value & 1023])
    _LAST_ID[1] = end - 1
    return ids


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a time zone, e.g. 2030-01-01T12:00:00Z")
    # stored as milliseconds since the epoch and read back as a UTC datetime: a time whose UTC form is
    # outside years 1-9999 (e.g. 9999-12-31T23:59:59-23:59) could be stored but never read back
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z once converted to UTC"
        ) from None
    return value


def _iso_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string with a time zone")
    return value


AwareDatetime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_aware)]


def _json_int(value: Any) -> Any:
    """A JSON integer: 3 or 3.0, never true/false or "3" (which Python would coerce)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number")
    return int(value)


def _json_int_or_none(value: Any) -> Any:
    return None if value is None else _json_int(value)


def _json_number(value: Any) -> Any:
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number")
    return value


TaskType = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
# a group's name: what groups/limits key on (docs/groups-and-limits.md)
GroupName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


UNIQUE_KEY_MAX = 256  # characters of a unique or debounce key
MAX_UNIQUE_TTL_S = 30 * 24 * 3600  # the longest safety expiry of a unique key
DEFAULT_UNIQUE_TTL_S = 24 * 3600
MAX_DEBOUNCE_WINDOW_S = 24 * 3600
FlowKey = Annotated[str, Field(min_length=1, max_length=UNIQUE_KEY_MAX, pattern=r"^[^\x00-\x1f\x7f]+$")]


class UniqueSpec(BaseModel):
    """A task's unique key (docs/unique-and-debounce.md): while a task holding ``key`` waits or runs in its
    queue, another submit with the same key is refused (409) instead of creating a second task."""

    model_config = ConfigDict(extra="forbid")

    # None in a request: the api fills in the hash of the type and canonical JSON payload (default_unique_key)
    key: FlowKey | None = None
    until: Literal["started", "finished"] = "finished"  # the key is released when the holder starts / ends
    ttl_s: int = Field(default=DEFAULT_UNIQUE_TTL_S, gt=0, le=MAX_UNIQUE_TTL_S)  # safety expiry of the key

    _ttl = field_validator("ttl_s", mode="before")(_json_int)


class DebounceSpec(BaseModel):
    """A debounced task (docs/unique-and-debounce.md): it runs ``window_s`` after the last submit with ``key``,
    with that submit's payload; earlier submits in the window update it instead of creating a task."""

    model_config = ConfigDict(extra="forbid")

    key: FlowKey
    window_s: float = Field(gt=0, le=MAX_DEBOUNCE_WINDOW_S)

    _window = field_validator("window_s", mode="before")(_json_number)


def default_unique_key(task_type: str, payload: Any) -> str:
    """The unique key of a task that names none: its type and the SHA-256 of its canonical JSON payload
    (sorted keys, compact), so the same type and payload always give the same key."""
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return f"{task_type}:{hashlib.sha256(canonical).hexdigest()}"


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# payloads' strict compact form, made once: json.dumps with options builds an encoder per call (more
# than half of the check's time for a small payload)
_STRICT_JSON = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))


_TOO_DEEP = f"nests deeper than {MAX_PAYLOAD_DEPTH} levels of arrays and objects"


class TaskCreate(BaseModel):
    """What a client sends to create a task."""

    model_config = ConfigDict(extra="forbid")

    type: TaskType
    # the queue to run in (created on first use); None = the api's STREAMQ_QUEUE
    queue: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    # fair concurrency and rate limits per key (docs/groups-and-limits.md): a tenant, an account, a host
    group: GroupName | None = None
    payload: Any = None
    priority: int = Field(default=DEFAULT_PRIORITY, ge=MIN_PRIORITY, le=MAX_PRIORITY)
    max_retries: int = Field(default=3, ge=0, le=100)
    scheduled_for: AwareDatetime | None = None
    webhook: str | None = Field(default=None, max_length=2048)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    retry_backoff_s: float | None = Field(default=None, ge=0, le=24 * 3600)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    unique: UniqueSpec | None = None  # at most one task of this key waits or runs in its queue (409 otherwise)
    debounce: DebounceSpec | None = None  # runs once, window_s after the last submit of its key
    # seconds its record is kept after it finishes (docs/scaling-out.md: Retention): 0 = removed at once, else kept
    # that long even beyond the queue's count bound, never beyond its age bound nor STREAMQ_RESULT_TTL_S
    keep_s: int | None = Field(default=None, ge=0, le=MAX_KEEP_S)

    # JSON types as the schema says them: Python would coerce true, "3" or 0 (a timestamp)
    _ints = field_validator("priority", "max_retries", mode="before")(_json_int)
    _keep = field_validator("keep_s", mode="before")(_json_int_or_none)
    _numbers = field_validator("timeout_s", "retry_backoff_s", mode="before")(_json_number)

    @field_validator("payload")
    @classmethod
    def _payload_size(cls, value: Any) -> Any:
        # the same compact form orjson stores; also refuses NaN/Infinity (not JSON) and ints over 64 bits
        if value is None:  # the common case (no payload): "null", nothing to check
            return value
        try:
            # orjson first: it stops at 255 levels with an error instead of recursing on (the encoder after
            # it recurses per level in C and would hit Python's recursion limit on a deeper value)
            dumped = orjson.dumps(value)
            encoded = _STRICT_JSON.encode(value)
        except (TypeError, ValueError) as error:
            if "ecursion" in str(error):  # orjson's "Recursion limit reached"
                raise ValueError(_TOO_DEEP) from None
            raise ValueError(f"must be plain JSON ({error})") from None
        if text_deeper_than(dumped, MAX_PAYLOAD_DEPTH):  # two counts in C for nearly every payload
            raise ValueError(_TOO_DEEP)
        size = len(encoded.encode())
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"is {size} bytes serialised; the limit is {MAX_PAYLOAD_BYTES} bytes (256 KiB)")
        return value

    @field_validator("webhook")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @field_validator("unique")
    @classmethod
    def _unique_key(cls, value: UniqueSpec | None, info: ValidationInfo) -> UniqueSpec | None:
        # runs only when `unique` is given (pydantic skips defaults): no cost for other tasks
        if value is None or value.key is not None or "type" not in info.data:
            return value
        return value.model_copy(update={"key": default_unique_key(info.data["type"], info.data.get("payload"))})

    @field_validator("debounce")
    @classmethod
    def _debounce_alone(cls, value: DebounceSpec | None, info: ValidationInfo) -> DebounceSpec | None:
        if value is None:
            return value
        if info.data.get("unique") is not None:
            raise ValueError(
                "cannot be combined with unique: a debounced task is replaced by later submits, "
                "a unique one refuses them; send one of them"
            )
        if info.data.get("scheduled_for") is not None:
            raise ValueError(
                "cannot be combined with scheduled_for: a debounced task is due window_s after its last submit"
            )
        return value


class TaskBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskCreate] = Field(min_length=1, max_length=1000)


class AttemptError(BaseModel):
    attempt: int
    error: str
    at: datetime


class TaskPublic(BaseModel):
    """What a client gets back."""

    id: str
    queue: str
    group: str | None = None
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
    unique: UniqueSpec | None = None
    debounce: DebounceSpec | None = None
    # true only in a submit's answer that updated an earlier debounced task instead of creating one (200)
    debounced: bool = False
    keep_s: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    result: Any = None
    error: str | None = None
    worker: str | None = None
    history: list[AttemptError] = Field(default_factory=list)
    webhook_status: str | None = None  # pending, retrying, delivered, failed, gone (the latest message)
    cancel_requested: bool = False  # a cancel was asked while it ran: it stops and ends cancelled
    progress: float | None = None  # the handler's latest ctx.progress(fraction, message), in [0, 1]
    progress_message: str | None = None
    workflow: str | None = None  # the workflow this task is a step of (docs/workflows.md)
    step: str | None = None  # its step name in that workflow

    @field_validator("payload")
    @classmethod
    def _redact(cls, value: Any, info: ValidationInfo) -> Any:
        """Secret values never reach a read, a response or a webhook body (shared/redaction.py)."""
        return redact_payload(info.data.get("type", ""), value)


class TaskPage(BaseModel):
    tasks: list[TaskPublic]
    next_cursor: str | None = None


class BatchResult(BaseModel):
    tasks: list[TaskPublic]
    created: int
    duplicates: int  # items that created nothing: idempotent replays, unique keys held, debounced submits
    # positions (0-based) of items refused because their unique key is held: their ``tasks`` item is the holder
    unique_duplicates: list[int] = Field(default_factory=list)


class Stats(BaseModel):
    queue: str  # the queue counted; "*" when several queues are summed (see ``queues``)
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
    queues: list[str] = Field(default_factory=list)  # the queues counted


class WorkerInfo(BaseModel):
    id: str
    host: str
    pid: int
    concurrency: int
    in_flight: int
    processed: int
    started_at: datetime
    last_heartbeat: datetime
    handlers: list[str]
    queue: str  # the first queue it consumes (kept for compatibility; see ``queues``)
    queues: list[str] = Field(default_factory=list)  # every queue it consumes, in its order


# the milliseconds a UTC datetime can hold: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_MS = -62_135_596_800_000
MAX_MS = 253_402_300_799_999
_MS = timedelta(milliseconds=1)


def ms_to_dt(value: str | bytes | int | None) -> datetime | None:
    """A stored millisecond time as a UTC datetime; None for an absent one. Total over integers: a time
    outside what a datetime holds (written before the api refused such times) reads as the nearest
    one it holds. Raises ValueError only for a value that is not an integer."""
    if value is None or value in ("", b""):
        return None
    # exact to the millisecond in every year (fromtimestamp of a float drifts by microseconds after 2255)
    return EPOCH + timedelta(milliseconds=min(max(int(value), MIN_MS), MAX_MS))


def dt_to_ms(value: datetime) -> int:
    """An aware datetime as whole milliseconds since the epoch (exact: no float in between)."""
    return (value - EPOCH) // _MS
