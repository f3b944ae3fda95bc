"""Prometheus metrics: every family defined once, in the process's default registry.

The api serves them at ``/metrics``; the other services through :func:`serve` (:mod:`streamq.shared.health`).
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from streamq.shared import health

log = logging.getLogger("streamq.metrics")
C = TypeVar("C")  # a tally family's child

TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

TASKS_SUBMITTED = Counter("streamq_tasks_submitted", "Tasks accepted by the api", ["queue", "type", "priority"])
TASK_RETRIES = Counter("streamq_task_retries", "Runs that failed and were scheduled again", ["queue", "type"])
TASKS_DEAD_LETTERED = Counter("streamq_tasks_dead_lettered", "Tasks sent to the dead-letter stream", ["queue"])
UNIQUE_DUPLICATES = Counter(
    "streamq_unique_duplicates", "Submits refused because their unique key was held (409)", ["queue"]
)
DEBOUNCED_SUBMITS = Counter(
    "streamq_debounced_submits", "Submits that updated a waiting debounced task instead of creating one", ["queue"]
)
TASKS_RECLAIMED = Counter("streamq_tasks_reclaimed", "Stream entries reclaimed from stalled workers", ["queue"])


class TallyChild:
    """One label set of a :class:`TallyHistogram`: bucket counts and a sum, plain Python numbers."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount


class _Tallies(Collector, Generic[C]):
    """A labelled family whose children are plain Python numbers, built into a metric family when
    scraped: ``labels`` is one dict lookup (a child made on first use by ``new_child``)."""

    def __init__(
        self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry | None = REGISTRY
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.children: dict[tuple[str, ...], C] = {}
        if registry is not None:
            registry.register(self)

    def new_child(self) -> C:
        raise NotImplementedError

    def labels(self, *values: str) -> C:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.new_child()
        return child


class TallyHistogram(_Tallies[TallyChild]):
    """A labelled histogram for per-task hot paths (worker, promoter): ``observe`` takes no lock and walks no
    bucket list (prometheus-client's takes a lock for the sum and one for the bucket, twice per task);
    the family is built from the tallies when scraped. Same name, buckets (``le`` inclusive) and
    samples (``_bucket``, ``_count``, ``_sum``) as a prometheus-client Histogram; a scrape running
    while a worker observes may see an observation in the buckets a moment before the sum."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        buckets: tuple[float, ...],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.bounds = (*buckets, math.inf)
        super().__init__(name, documentation, labelnames, registry)

    def new_child(self) -> TallyChild:
        return TallyChild(self.bounds)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self.children.items()):
            counts, total = list(child.counts), child.sum
            cumulative, running = [], 0
            for bound, count in zip(self.bounds, counts, strict=True):
                running += count
                cumulative.append(("+Inf" if bound == math.inf else repr(float(bound)), running))
            family.add_metric(list(values), cumulative, total)
        yield family


class TallyCount:
    """One label set of a :class:`TallyCounter`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class TallyCounter(_Tallies[TallyCount]):
    """A labelled counter for per-task hot paths (a worker's finished runs): ``labels`` is one dict
    lookup and ``inc`` adds to a plain number (prometheus-client's Counter takes a lock in each: 4%
    of a busy worker's CPU); exposed as a Counter of the same name (``<name>_total``)."""

    def new_child(self) -> TallyCount:
        return TallyCount()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self.children.items()):
            family.add_metric(list(values), child.value)
        yield family


TASKS_FINISHED = TallyCounter(
    "streamq_tasks_finished", "Task runs that ended, by the status they ended in", ["queue", "type", "status"]
)
TASK_RUN_SECONDS = TallyHistogram("streamq_task_run_seconds", "Handler run time", ["queue", "type"], TIME_BUCKETS)
TASK_WAIT_SECONDS = TallyHistogram(
    "streamq_task_wait_seconds", "From due time to start", ["queue", "priority"], TIME_BUCKETS
)
TASKS_IN_PROGRESS = Gauge("streamq_tasks_in_progress", "Tasks running in this process", ["queue"])
SCHEDULER_LATENESS = TallyHistogram(  # up to a batch (500) of observations per promote call
    "streamq_scheduler_lateness_seconds", "Due time to enqueued, per promoted task", ["queue"], TIME_BUCKETS
)
WEBHOOK_DELIVERIES = Counter(
    "streamq_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, retrying, failed, gone)",
    ["outcome"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "streamq_webhook_delivery_seconds", "Webhook delivery attempt time", buckets=TIME_BUCKETS
)
REDIS_WRITES_REFUSED = Counter(
    "streamq_redis_writes_refused",
    "Writes Redis refused, by cause (out_of_memory, read_only, persistence_failed)",
    ["cause"],
)
REDIS_MEMORY_RATIO = Gauge(
    "streamq_redis_memory_ratio", "Redis used memory / maxmemory, as the api's memory guard last sampled it (0: none)"
)
HTTP_REQUESTS = Counter("streamq_http_requests", "HTTP requests served by the api", ["method", "route", "status"])
HTTP_REQUEST_SECONDS = Histogram(
    "streamq_http_request_seconds", "HTTP request time", ["method", "route"], buckets=TIME_BUCKETS
)


def serve(host: str, port: int) -> int:
    """Serve ``/metrics`` (and ``/livez``, ``/readyz``: :mod:`streamq.shared.health`) on a background thread;
    returns the bound port (``port=0`` picks one)."""
    return health.serve(host, port)


# --- groups and limits (docs/groups-and-limits.md): per queue only, never per group (bounded series) ---
GROUP_FIGURES = (
    ("streamq_group_waiting_tasks", "Tasks of groups or limited types waiting on a limit or their turn"),
    ("streamq_group_waiting_groups", "Groups (and limited types' ungrouped tasks) with tasks waiting"),
    ("streamq_limit_held_groups", "Groups a rate holds back now (until its window lets the next start)"),
    ("streamq_limit_full_groups", "Groups with waiting tasks held back by a full concurrency (theirs or a type's)"),
)


def group_reads(pipe: Any, part: Any) -> None:
    """Queue one partition's GROUP_FIGURES reads on ``pipe`` (a KeySchema's keys), in order."""
    pipe.get(part.groups_waiting)
    pipe.hlen(part.groups_backlog)
    pipe.zcard(part.groups_wake)
    pipe.zcard(part.groups_recheck)


def group_families(figures: dict[str, list[int]]) -> Iterator[GaugeMetricFamily]:
    """The GROUP_FIGURES gauges from {queue: [figure, ...]}."""
    for i, (name, doc) in enumerate(GROUP_FIGURES):
        family = GaugeMetricFamily(name, doc, labels=["queue"])
        for queue in sorted(figures):
            family.add_metric([queue], figures[queue][i])
        yield family
