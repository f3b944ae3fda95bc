"""Webhook messages per the Standard Webhooks specification: secrets, signatures, bodies, the retry
schedule and how each response is classified.

Headers sent: ``webhook-id`` (the same on every retry of one message), ``webhook-timestamp`` (unix
seconds of this attempt) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of
``{id}.{timestamp}.{body}`` for each configured secret, space-separated (secret rotation).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
JITTER = 0.1  # each scheduled delay is spread uniformly over +-10 %
MAX_RETRY_AFTER_S = 24 * 3600.0
TERMINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})


class WebhookStatus(StrEnum):
    """``webhook_status`` of a task: where its latest webhook message stands."""

    PENDING = "pending"  # an attempt is due now
    RETRYING = "retrying"  # an attempt failed; the next one is scheduled
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # a 3xx/4xx answer, or every attempt of the schedule failed
    GONE = "gone"  # 410 Gone: the receiver asked us to stop


def parse_secrets(value: str) -> list[bytes]:
    """The keys of ``whsec_<base64>`` secrets, space-separated; ValueError names the bad one."""
    keys = []
    for i, part in enumerate(value.split(), start=1):
        if not part.startswith(SECRET_PREFIX):
            raise ValueError(f"secret {i} must start with {SECRET_PREFIX!r} (whsec_ then base64)")
        try:
            key = base64.b64decode(part[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"secret {i} is not valid base64 after {SECRET_PREFIX!r}") from None
        if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
            raise ValueError(f"secret {i} decodes to {len(key)} bytes; it must be 24 to 64 bytes")
        keys.append(key)
    return keys


def new_secret(nbytes: int = 32) -> str:
    """A fresh secret in the spec's format (what the ``python -c`` in docs/webhooks-and-email.md prints)."""
    import os

    return SECRET_PREFIX + base64.b64encode(os.urandom(nbytes)).decode()


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one ``v1,<sig>`` per key, space-separated."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode() for key in keys)


def headers(keys: Sequence[bytes], msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "content-type": "application/json",
        "user-agent": "streamq-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(keys, msg_id, timestamp, body),
    }


def body(event: str, task: dict[str, Any], at_ms: int) -> bytes:
    """``{"type": "task.<event>", "timestamp": <ISO 8601>, "data": {task}}``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms / 1000)) + f".{at_ms % 1000:03d}Z"
    return orjson.dumps({"type": f"task.{event}", "timestamp": stamp, "data": task})


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), MAX_RETRY_AFTER_S)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one attempt means: the delivery's new status and, when retrying, the delay."""

    status: WebhookStatus
    delay_s: float | None = None  # set when status is RETRYING
    error: str = ""


def classify(status_code: int | None, error: str, retry_after: float | None) -> tuple[bool, str]:
    """(retryable, error text) for an answer (``status_code``) or a network error (None)."""
    if status_code is None:
        return True, error or "network error"
    if 200 <= status_code < 300:
        return False, ""
    if status_code == 429 or status_code >= 500:
        return True, f"HTTP {status_code}"
    if 300 <= status_code < 400:
        return False, f"HTTP {status_code}: redirects are not followed"
    return False, f"HTTP {status_code}"


def decide(
    schedule: Sequence[float],
    round_attempt: int,
    status_code: int | None,
    error: str = "",
    retry_after: float | None = None,
) -> Verdict:
    """The verdict after attempt ``round_attempt`` (1-based) of the current series.

    2xx delivered; 410 gone at once; 429/5xx/network errors retry after ``schedule[round_attempt]``
    (with jitter, and never sooner than ``Retry-After``) until the schedule is used up; anything
    else (3xx, other 4xx) fails without retrying."""
    if status_code is not None and 200 <= status_code < 300:
        return Verdict(WebhookStatus.DELIVERED)
    if status_code == 410:
        return Verdict(WebhookStatus.GONE, error="HTTP 410: the receiver asked to stop (Gone)")
    retryable, text = classify(status_code, error, retry_after)
    if not retryable:
        return Verdict(WebhookStatus.FAILED, error=text)
    if round_attempt >= len(schedule):
        return Verdict(WebhookStatus.FAILED, error=f"{text} (gave up after {round_attempt} attempts)")
    delay = schedule[round_attempt] * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return Verdict(WebhookStatus.RETRYING, delay_s=delay, error=text)
