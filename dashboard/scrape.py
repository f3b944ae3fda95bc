"""Reading services' ``/metrics``: fetch, parse with prometheus-client's parser, and aggregate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

HISTOGRAMS = ("streamq_task_wait_seconds", "streamq_task_run_seconds")


@dataclass
class Scrape:
    """One service's samples, or the error that kept us from reading them."""

    service_id: str
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    @property
    def up(self) -> bool:
        return self.error is None

    def total(self, name: str, **labels: str) -> float:
        """Sum of every sample called ``name`` whose labels include ``labels``."""
        return sum(s.value for s in self.samples if s.name == name and _has(s, labels))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.samples:
            if s.name == name and label in s.labels:
                out[s.labels[label]] = out.get(s.labels[label], 0.0) + s.value
        return out

    def buckets(self, histogram: str) -> dict[float, float]:
        """Cumulative bucket counts of one histogram, summed over its other labels, by upper bound."""
        out: dict[float, float] = {}
        for s in self.samples:
            if s.name == f"{histogram}_bucket":
                bound = float(s.labels["le"])
                out[bound] = out.get(bound, 0.0) + s.value
        return out


def _has(sample: Sample, labels: dict[str, str]) -> bool:
    return all(sample.labels.get(k) == v for k, v in labels.items())


def parse(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


async def scrape_one(client: httpx.AsyncClient, service_id: str, url: str) -> Scrape:
    try:
        response = await client.get(url, timeout=1.5)
        response.raise_for_status()
        return Scrape(service_id, parse(response.text))
    except (httpx.HTTPError, ValueError) as error:
        return Scrape(service_id, error=f"{type(error).__name__}: {error}")


async def scrape_all(client: httpx.AsyncClient, targets: Iterable[tuple[str, str]]) -> list[Scrape]:
    """Every ``(service id, metrics URL)`` at once."""
    return list(await asyncio.gather(*(scrape_one(client, sid, url) for sid, url in targets)))


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile`` over cumulative buckets (linear inside a bucket, as Prometheus does)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return bounds[-1]


def delta(now: dict[float, float], before: dict[float, float] | None) -> dict[float, float]:
    """Observations between two readings of one process's buckets (a counter reset restarts from 0)."""
    if before is None:
        return {}
    if any(now.get(b, 0.0) < v for b, v in before.items()):
        return dict(now)
    return {b: v - before.get(b, 0.0) for b, v in now.items()}


def add(into: dict[float, float], more: dict[float, float]) -> None:
    for bound, value in more.items():
        into[bound] = into.get(bound, 0.0) + value
