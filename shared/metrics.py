"""Prometheus metrics: every family defined once, in the process's default registry.

The api serves them at ``/metrics``; the other services through :func:`serve` (:mod:`shared.health`).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram

from shared import health

log = logging.getLogger("streamq.metrics")

TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

TASKS_SUBMITTED = Counter("streamq_tasks_submitted", "Tasks accepted by the api", ["queue", "type", "priority"])
TASKS_FINISHED = Counter(
    "streamq_tasks_finished", "Task runs that ended, by the status they ended in", ["queue", "type", "status"]
)
TASK_RETRIES = Counter("streamq_task_retries", "Runs that failed and were scheduled again", ["queue", "type"])
TASKS_DEAD_LETTERED = Counter("streamq_tasks_dead_lettered", "Tasks sent to the dead-letter stream", ["queue"])
TASKS_RECLAIMED = Counter("streamq_tasks_reclaimed", "Stream entries reclaimed from stalled workers", ["queue"])
TASK_RUN_SECONDS = Histogram("streamq_task_run_seconds", "Handler run time", ["queue", "type"], buckets=TIME_BUCKETS)
TASK_WAIT_SECONDS = Histogram(
    "streamq_task_wait_seconds", "From due time to start", ["queue", "priority"], buckets=TIME_BUCKETS
)
TASKS_IN_PROGRESS = Gauge("streamq_tasks_in_progress", "Tasks running in this process", ["queue"])
SCHEDULER_LATENESS = Histogram(
    "streamq_scheduler_lateness_seconds",
    "Due time to enqueued, per promoted task",
    ["queue"],
    buckets=TIME_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "streamq_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, retrying, failed, gone)",
    ["outcome"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "streamq_webhook_delivery_seconds", "Webhook delivery attempt time", buckets=TIME_BUCKETS
)
HTTP_REQUESTS = Counter("streamq_http_requests", "HTTP requests served by the api", ["method", "route", "status"])
HTTP_REQUEST_SECONDS = Histogram(
    "streamq_http_request_seconds", "HTTP request time", ["method", "route"], buckets=TIME_BUCKETS
)


def serve(host: str, port: int) -> int:
    """Serve ``/metrics`` (and ``/livez``, ``/readyz``: :mod:`shared.health`) on a background thread;
    returns the bound port (``port=0`` picks one)."""
    return health.serve(host, port)
