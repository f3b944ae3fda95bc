"""One webhook attempt: sign, POST through the SSRF guard (no redirects, bounded time), decide what
the answer means (delivered, retry later, failed, gone) and record it in one script call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis

from streamq.shared import metrics, tracing, webhooks
from streamq.shared.deliveries import Claimed, Deliveries
from streamq.shared.ssrf import BlockedUrl, SsrfGuard

log = logging.getLogger("streamq.notifier")
REFUSED = "refused by"  # errors starting with this are final (the URL itself is refused)
MAX_RESPONSE_SNIPPET = 512  # bytes of the receiver's answer kept in the delivery log


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


class Sender:
    def __init__(
        self,
        client: httpx.AsyncClient,
        guard: SsrfGuard,
        deliveries: Deliveries | None,
        *,
        secrets: Sequence[bytes],
        schedule: Sequence[float],
        timeout_s: float = 10.0,
        redis: Redis | None = None,
    ) -> None:
        self.redis = redis  # where a traced attempt reads its task's trace context (tracing on only)
        self.client = client
        self.guard = guard
        self.deliveries = deliveries
        self.secrets = list(secrets)
        self.schedule = list(schedule)
        self.timeout_s = timeout_s  # the whole attempt, however slowly the receiver answers

    async def post(self, claimed: Claimed) -> tuple[int | None, str, float | None, str]:
        """(status code or None, error, Retry-After seconds, start of the answer)."""
        headers = webhooks.headers(self.secrets, claimed.delivery_id, claimed.body)
        if tracing.ENABLED:  # the delivery span's traceparent (not signed: the signature covers id, time, body)
            tracing.inject(headers)
        try:
            self.guard.check_static(claimed.url)
            async with (
                asyncio.timeout(self.timeout_s),
                self.client.stream("POST", claimed.url, content=claimed.body, headers=headers) as response,
            ):
                snippet = b""
                async for chunk in response.aiter_bytes():
                    snippet += chunk
                    if len(snippet) >= MAX_RESPONSE_SNIPPET:
                        break
                retry_after = webhooks.retry_after_s(response.headers.get("retry-after"))
                text = snippet[:MAX_RESPONSE_SNIPPET].decode(errors="replace")
                return response.status_code, "", retry_after, text
        except BlockedUrl as error:
            return None, f"{REFUSED} the SSRF guard: {error}", None, ""
        except httpx.InvalidURL as error:
            return None, f"{REFUSED} httpx: invalid URL: {error}", None, ""
        except TimeoutError:
            return None, f"timed out after {self.timeout_s:g} s", None, ""
        except httpx.HTTPError as error:
            return None, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__, None, ""

    async def _traced_post(self, claimed: Claimed, target: Deliveries) -> tuple[int | None, str, float | None, str]:
        """:meth:`post` in a CLIENT span that is a child of the task's submit span (shared/tracing.py)."""
        stored: list[str | None] = [None, None]
        if self.redis is not None:
            stored = await self.redis.hmget(target.keys.task(claimed.task_id), *tracing.FIELDS)
        attributes = {
            **tracing.messaging(target.keys.queue, "deliver", claimed.task_id),
            "http.request.method": "POST",
            "url.full": claimed.url,
            "streamq.webhook.id": claimed.delivery_id,
            "streamq.webhook.event": claimed.event,
            "streamq.webhook.attempt": claimed.attempt,
        }
        with tracing.client_span(f"webhook {claimed.event}", stored, **attributes) as span:
            answer = await self.post(claimed)
            if answer[0] is not None:
                span.set_attribute("http.response.status_code", answer[0])
            if answer[1] or (answer[0] or 0) >= 400:
                tracing.failed(span, answer[1] or f"HTTP {answer[0]}")
            return answer

    async def send(self, claimed: Claimed, deliveries: Deliveries | None = None) -> webhooks.WebhookStatus:
        """Attempt ``claimed`` and record the attempt through ``deliveries`` (the claimed delivery's
        partition; default: the one given at construction)."""
        target = deliveries or self.deliveries
        if target is None:
            raise ValueError("no Deliveries to record the attempt in")
        started = time.time()
        if tracing.ENABLED:
            status_code, error, retry_after, answer = await self._traced_post(claimed, target)
        else:
            status_code, error, retry_after, answer = await self.post(claimed)
        duration = time.time() - started
        if error.startswith(REFUSED):
            verdict = webhooks.Verdict(webhooks.WebhookStatus.FAILED, error=error)
        else:
            verdict = webhooks.decide(self.schedule, claimed.round, status_code, error, retry_after)
        delay_ms = int((verdict.delay_s or 0) * 1000)
        entry: dict[str, Any] = {
            "webhook_id": claimed.delivery_id,
            "event": claimed.event,
            "url": claimed.url,
            "attempt": claimed.attempt,
            "status_code": status_code,
            "error": verdict.error or None,
            "response": answer or None,
            "duration_ms": round(duration * 1000, 1),
            "started_at": _iso(started),
            "finished_at": _iso(started + duration),
            "outcome": verdict.status.value,
            "next_attempt_at": _iso(time.time() + delay_ms / 1000) if verdict.delay_s is not None else None,
        }
        written = await target.record(claimed, verdict.status, delay_ms=delay_ms, entry=entry, error=verdict.error)
        metrics.WEBHOOK_DELIVERIES.labels(verdict.status.value).inc()
        metrics.WEBHOOK_DELIVERY_SECONDS.observe(duration)
        log.info(
            "webhook attempt",
            extra={
                "task": claimed.task_id,
                "webhook_id": claimed.delivery_id,
                "url": log_url(claimed.url),
                "attempt": claimed.attempt,
                "status_code": status_code,
                "outcome": verdict.status.value,
                "recorded": written,
                "error": verdict.error,
            },
        )
        return verdict.status


def log_url(url: str) -> str:
    """``url`` as a log line shows it: scheme, host, port and path; credentials and the query (where
    tokens often ride) are left out."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<unparsable>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?..." if parts.query else "")
