"""OpenTelemetry tracing: one trace from the submit request to the worker, the scheduler, the webhook.

Configured only by the OpenTelemetry SDK's own environment variables: tracing is on in a service when
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (and
``OTEL_SDK_DISABLED`` is not true) and the ``streamq[otel]`` extra is installed. Spans go over
OTLP/HTTP protobuf through a batch span processor; ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` (and ``_ARG``), ``OTEL_BSP_*`` and ``OTEL_EXPORTER_OTLP_*`` are read by the SDK.

Off, nothing here imports opentelemetry and every hot path checks :data:`ENABLED` once per task: the
helpers below are called only when it is true (each imports what it uses; after :func:`setup` those
modules are loaded, so the imports are dictionary look-ups).

The trace context travels with the task as two task hash fields, ``traceparent`` and ``tracestate``
(W3C Trace Context): the api writes its submit span's context there (a child of the request's
``traceparent``, or a new root), and the worker, scheduler and notifier read it back.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from streamq.shared.models import TaskCreate

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger("streamq.tracing")

ENABLED = False  # set by setup(): every caller checks this before calling anything else here
SYSTEM = "streamq"  # messaging.system (no well-known value fits a Redis Streams queue of our own)
FIELDS = ("traceparent", "tracestate")  # the task hash fields holding the submit's trace context
_OPERATION_TYPES = frozenset({"create", "send", "receive", "process", "settle"})  # the conventions' types
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SHUTDOWN_TIMEOUT_S = 5.0  # the longest a stopping service waits for its last spans to be exported


def wanted() -> bool:
    """An OTLP endpoint is configured and the SDK is not disabled."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(name, "").strip() for name in _ENDPOINTS)


def setup(service: str) -> bool:
    """Turn tracing on for this process when :func:`wanted` and the SDK is installed; ``service`` is the
    ``service.name`` unless ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` name one."""
    global ENABLED
    if not wanted():
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        log.warning(
            "an OTLP endpoint is set but the OpenTelemetry SDK is not installed: tracing stays off "
            '(pip install "streamq[otel]")',
            extra={"error": str(error)},
        )
        return False
    resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, as the SDK reads them
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"streamq-{service}"}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint, headers, timeout: OTEL_*
    trace.set_tracer_provider(provider)
    ENABLED = True
    log.info("tracing on", extra={"service_name": resource.attributes.get(SERVICE_NAME)})
    return True


def shutdown(timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
    """Export the spans still buffered and stop tracing: called once a service has stopped, so the
    spans of its last tasks leave before the process ends. Bounded by ``timeout_s`` (the SDK's own
    exit hook waits up to 30 s for the batch processor, and an unreachable collector holds each export
    for the exporter's timeout): what is not exported by then is dropped, with a warning."""
    global ENABLED
    if not ENABLED:
        return
    ENABLED = False
    from opentelemetry import trace

    provider: Any = trace.get_tracer_provider()
    if not hasattr(provider, "shutdown"):
        return
    flushing = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    flushing.start()
    flushing.join(timeout_s)
    if flushing.is_alive():
        log.warning("spans not exported within the shutdown bound: dropped", extra={"timeout_s": timeout_s})


def _tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer("streamq")


def messaging(queue: str, operation: str, task_id: str | None = None) -> dict[str, Any]:
    """The messaging semantic attributes of one operation on one task (or several)."""
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.name": operation,
    }
    if operation in _OPERATION_TYPES:
        attributes["messaging.operation.type"] = operation
    if task_id is not None:
        attributes["messaging.message.id"] = task_id
    return attributes


# --- carrying the context: request headers -> task hash fields -> a parent context --------------------
def _from_headers(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """The ``traceparent`` and ``tracestate`` of ASGI request headers."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name == b"traceparent" or name == b"tracestate"
    }


def parent(fields: Sequence[str | None] | dict[str, str]) -> Any:
    """The OpenTelemetry context of stored (``traceparent``, ``tracestate``) values, or of a carrier
    dict; an empty context (a new root) when there is none or it is malformed."""
    from opentelemetry import propagate

    carrier = fields if isinstance(fields, dict) else {k: v for k, v in zip(FIELDS, fields, strict=False) if v}
    return propagate.extract(carrier)


def inject(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the current span's ``traceparent`` (and ``tracestate``) added."""
    from opentelemetry import propagate

    propagate.inject(headers)
    return headers


def _current_fields() -> list[str]:
    """The current span's context as task hash fields (field, value, ...)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return [item for name in FIELDS if name in carrier for item in (name, carrier[name])]


class Traced(TaskCreate):
    """A task to submit with its trace context: ``carrier`` holds the extra task hash fields
    (field, value, ...). A slot, not a field: the task's fields, dump and response stay as they are."""

    __slots__ = ("carrier",)


def carried(task: TaskCreate) -> list[str]:
    """The trace context fields a submitted task carries (shared/queue.py's ``_extras``)."""
    carrier: list[str] = getattr(task, "carrier", [])
    return carrier


def _with_carrier(task: TaskCreate, carrier: list[str]) -> Traced:
    traced = Traced.model_construct(task.model_fields_set, **task.__dict__)
    object.__setattr__(traced, "carrier", carrier)
    return traced


@contextmanager
def submitting(
    headers: Sequence[tuple[bytes, bytes]], tasks: Sequence[TaskCreate], queue: str
) -> Iterator[tuple[list[TaskCreate], Span]]:
    """The api's span for one submit request (PRODUCER ``send <queue>``, a child of the request's
    ``traceparent`` or a new root), and the tasks carrying its context to store. Name the stored ids
    with :func:`submitted`."""
    attributes = messaging(queue, "send")
    if len(tasks) > 1:
        attributes["messaging.batch.message_count"] = len(tasks)
    from opentelemetry.trace import SpanKind

    with _tracer().start_as_current_span(
        f"send {queue}", context=parent(_from_headers(headers)), kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        carrier = _current_fields()
        yield [_with_carrier(task, carrier) for task in tasks], span


def submitted(span: Span, ids: Sequence[str]) -> None:
    if len(ids) == 1:
        span.set_attribute("messaging.message.id", ids[0])


# --- spans of the other services ----------------------------------------------------------------------
@contextmanager
def processing(
    stored: Sequence[str | None], *, task_type: str, queue: str, task_id: str, attempt: int, rerun: bool
) -> Iterator[Span]:
    """The worker's CONSUMER ``process <type>`` span of one run: a child of the submit's context, so
    every attempt is in the submit's trace; a retry or a reclaimed run also links to that context (the
    messaging conventions' link to the message's creation context), marking it a re-run."""
    from opentelemetry.trace import Link, SpanKind, get_current_span

    context = parent(stored)
    links = []
    if rerun:
        creation = get_current_span(context).get_span_context()
        if creation.is_valid:
            links.append(Link(creation, {"streamq.link": "retry" if attempt > 1 else "reclaim"}))
    attributes = messaging(queue, "process", task_id)
    attributes["streamq.task.type"] = task_type
    attributes["streamq.task.attempt"] = attempt
    with _tracer().start_as_current_span(
        f"process {task_type}", context=context, kind=SpanKind.CONSUMER, attributes=attributes, links=links
    ) as span:
        yield span


def promoted(stored: Sequence[str | None], queue: str, task_id: str, start_ns: int, end_ns: int) -> None:
    """The scheduler's span of one delayed task put on its stream (a retry's back-off, or a task
    submitted for later), a child of its submit span, over the promote.lua call that moved it."""
    from opentelemetry.trace import SpanKind

    attributes = messaging(queue, "promote", task_id)
    span = _tracer().start_span(
        f"promote {queue}", context=parent(stored), kind=SpanKind.INTERNAL, attributes=attributes, start_time=start_ns
    )
    span.end(end_time=end_ns)


@contextmanager
def client_span(name: str, stored: Sequence[str | None] | None = None, **attributes: Any) -> Iterator[Span]:
    """A CLIENT span (an outbound call): a child of the current span, or of ``stored`` fields."""
    from opentelemetry.trace import SpanKind

    context = parent(stored) if stored is not None else None
    with _tracer().start_as_current_span(name, context=context, kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield span


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span active here, or None (the JSON log lines)."""
    from opentelemetry.trace import get_current_span

    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def failed(span: Span, description: str) -> None:
    """Mark ``span`` failed (an outbound call answered with an error) without an exception."""
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description))
