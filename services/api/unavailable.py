"""Redis out of reach (down, failing over, a cluster slot without a master): the api answers 503 with
``Retry-After``, not 500. A request cut off this way may or may not have been applied (the command can
fail after Redis ran it), so a client retries a submit with an ``Idempotency-Key`` to be safe."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ClusterDownError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

UNAVAILABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, ClusterDownError, TryAgainError)
RETRY_AFTER_S = 1


def unavailable_body(error: BaseException) -> dict[str, Any]:
    return {
        "detail": f"Redis is unavailable ({type(error).__name__}: {error}); retry in a moment. The request "
        "may or may not have been applied: retry a submit with the same Idempotency-Key to be safe"
    }
