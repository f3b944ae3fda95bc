"""The ``http`` task type: one HTTP request through the SSRF guard.

Payload ``{"method", "url", "headers", "secret_headers", "json" | "body", "timeout_s",
"expect_status"}`` (see ``shared/payloads.py``). Redirects are not followed (a 3xx is an answer like
any other). The result holds the status, a subset of the response headers and at most 64 KiB of the
body, with any secret header value the receiver echoed masked. A status other than the expected one
(2xx by default) fails the run, so it is retried with the task's back-off; a URL the guard refuses
fails at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import ValidationError

from streamq.services.worker.registry import handler
from streamq.shared import tracing
from streamq.shared.errors import Permanent
from streamq.shared.payloads import HttpPayload
from streamq.shared.redaction import MASK
from streamq.shared.settings import Settings
from streamq.shared.ssrf import BlockedUrl, SsrfGuard, guarded_client

MAX_BODY_BYTES = 64 * 1024
KEPT_HEADERS = (
    "content-type",
    "content-length",
    "location",
    "etag",
    "last-modified",
    "retry-after",
    "date",
    "x-request-id",
)
# a secret value, or a word of one (a token without "Bearer "), this long is masked in the stored answer;
# shorter ones are not (masking every "1" of a body would garble it, and reveals nothing worth hiding)
MIN_MASKED = 8

_guard = SsrfGuard()


class HttpTimeout(Exception):
    """No complete answer within the payload's ``timeout_s``: the run fails and is retried."""


class UnexpectedStatus(Exception):
    """The answer's status is not the expected one: the run fails and is retried."""


def configure(settings: Settings) -> None:
    """Take ``STREAMQ_ALLOW_PRIVATE_NETWORKS`` and ``STREAMQ_WEBHOOK_ALLOWED_HOSTS`` (worker start)."""
    global _guard
    _guard = SsrfGuard.from_settings(settings)


def _secrets(p: HttpPayload) -> list[str]:
    """What to mask in the stored answer: each secret header value and each of its words, longest first."""
    found = {part for value in p.secret_headers.values() for part in (value, *value.split())}
    return sorted((part for part in found if len(part) >= MIN_MASKED), key=len, reverse=True)


def _mask(text: str, secrets: Sequence[str], truncated: bool) -> str:
    """``text`` with every secret masked; a truncated body also loses a secret's start at its very end."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    if truncated:
        for secret in secrets:
            cut = _cut_start(text, secret)
            if cut:
                return text[:-cut] + MASK
    return text


def _cut_start(text: str, secret: str) -> int:
    """The length of the longest end of ``text`` that is the start of ``secret`` (0: none)."""
    start = max(0, len(text) - len(secret) + 1)
    while (start := text.find(secret[0], start)) != -1:
        if secret.startswith(text[start:]):
            return len(text) - start
        start += 1
    return 0


def _problems(error: ValidationError) -> str:
    """The payload's problems by field, without the values (which may be secret)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in error.errors())


async def _read(response: httpx.Response) -> tuple[str, bool]:
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            return data[:MAX_BODY_BYTES].decode(errors="replace"), True
    return data.decode(errors="replace"), False


@handler("http")
async def http_request(payload: Any) -> dict[str, Any]:
    try:
        p = HttpPayload.model_validate(payload)
        _guard.check_static(p.url)
    except ValidationError as error:
        raise Permanent(f"invalid http payload: {_problems(error)}") from None
    except BlockedUrl as error:
        raise Permanent(f"URL refused: {error}") from None
    kwargs: dict[str, Any] = {"headers": p.request_headers()}
    if p.json_body is not None:
        kwargs["json"] = p.json_body
    elif p.body is not None:
        kwargs["content"] = p.body.encode()
    if tracing.ENABLED:
        return await _traced(p, kwargs)
    return await _send(p, kwargs)


async def _traced(p: HttpPayload, kwargs: dict[str, Any]) -> dict[str, Any]:
    """:func:`_send` in a CLIENT span (a child of the run's ``process http`` span), carrying its traceparent."""
    attributes = {"http.request.method": p.method, "url.full": p.url}
    with tracing.client_span(p.method, **attributes) as span:
        tracing.inject(kwargs["headers"])  # request_headers() made this dict for this request
        result = await _send(p, kwargs)  # an exception (an unexpected status too) is recorded on the span
        span.set_attribute("http.response.status_code", result["status"])
        return result


async def _send(p: HttpPayload, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request and its answer as the task's result (or the run's failure)."""
    try:
        async with (
            asyncio.timeout(p.timeout_s),
            guarded_client(_guard, p.timeout_s) as client,
            client.stream(p.method, p.url, **kwargs) as response,
        ):
            body, truncated = await _read(response)
    except (BlockedUrl, httpx.InvalidURL) as error:
        raise Permanent(f"URL refused: {error}") from None
    except (TimeoutError, httpx.TimeoutException):  # the whole deadline, or httpx's own per-phase one first
        raise HttpTimeout(f"no complete answer from {p.method} {p.url} within {p.timeout_s:g} s") from None
    secrets = _secrets(p)
    result = {
        "status": response.status_code,
        "headers": {k: _mask(response.headers[k], secrets, False) for k in KEPT_HEADERS if k in response.headers},
        "body": _mask(body, secrets, truncated),
        "truncated": truncated,
    }
    if not p.expected(response.status_code):
        expected = p.expect_status if p.expect_status is not None else "2xx"
        raise UnexpectedStatus(f"HTTP {response.status_code} from {p.method} {p.url} (expected {expected})")
    return result
