"""Redis out of reach, or refusing writes: the errors a caller can wait out rather than report as bugs.

Redis refuses every write (and runs reads) when it is out of memory under ``maxmemory-policy
noeviction`` (``OOM``), when it is a read-only replica (``READONLY``), and when a persistence check
failed (``MISCONF``: a failed RDB save with ``stop-writes-on-bgsave-error``, or a failed AOF write). A
script refused this way wrote nothing: Redis checks before a script's first write, and a script
declaring flags before it runs at all. The api answers both kinds 503 with ``Retry-After``
(``services/api/unavailable.py``); the worker's finisher keeps outcomes through both
(``services/worker/finisher.py``). Each refusal seen is counted in
``streamq_redis_writes_refused_total{cause}``."""

from __future__ import annotations

from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamq.shared import metrics

UNREACHABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, ClusterDownError, TryAgainError)
CAUSES = {
    "out_of_memory": "Redis is out of memory (used memory above maxmemory, policy noeviction)",
    "read_only": "Redis is a read-only replica",
    "persistence_failed": "Redis refuses writes after a failed persistence check (MISCONF: RDB save or AOF write)",
    "memory_guard": "Redis used memory is above STREAMQ_MEMORY_GUARD_RATIO of its maxmemory: new tasks are refused"
    " until pruning or finishing frees memory (see the docs: The HTTP api, Memory guard)",
}


class MemoryGuarded(RedisError):  # type: ignore[misc]  # untyped in redis-py
    """The api's memory guard refusing a new task (shared/memguard.py); nothing was written."""

    def __init__(self, ratio: float, threshold: float) -> None:
        super().__init__(f"used memory at {ratio:.0%} of maxmemory, threshold {threshold:.0%}")


def refusal(error: BaseException) -> str | None:
    """The cause (a key of ``CAUSES``) when ``error`` is Redis refusing a write; None for any other error."""
    if isinstance(error, MemoryGuarded):
        return "memory_guard"
    if isinstance(error, OutOfMemoryError):
        return "out_of_memory"
    if isinstance(error, ReadOnlyError):
        return "read_only"
    if isinstance(error, ResponseError) and str(error).startswith("MISCONF"):  # redis-py has no class for it
        return "persistence_failed"
    return None


def counted_refusal(error: BaseException) -> str | None:
    """:func:`refusal`, counted in ``streamq_redis_writes_refused_total`` when it is one."""
    cause = refusal(error)
    if cause is not None:
        metrics.REDIS_WRITES_REFUSED.labels(cause).inc()
    return cause


def transient(error: BaseException) -> bool:
    """Redis out of reach or refusing writes: worth waiting out (an outcome kept, a request retried)."""
    return isinstance(error, (*UNREACHABLE, OSError)) or refusal(error) is not None
