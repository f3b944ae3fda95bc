"""The worker's lock-free histograms and counters expose exactly what a prometheus-client Histogram would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from streamq.shared.metrics import TIME_BUCKETS, TallyCounter, TallyHistogram


def test_tally_histogram_matches_prometheus_client() -> None:
    reference_registry = CollectorRegistry()
    reference = Histogram("t", "doc", ["queue", "type"], buckets=TIME_BUCKETS, registry=reference_registry)
    tally = TallyHistogram("t", "doc", ["queue", "type"], TIME_BUCKETS, registry=CollectorRegistry())
    values = [0, 0.0005, 0.0006, 0.001, 0.3, 2.5, 299, 300, 301, 1e9]  # on, between and beyond the bounds
    for i, v in enumerate(values):
        for labels in (("a", "x"), ("b", "y" if i % 2 else "z")):
            reference.labels(*labels).observe(v)
            tally.labels(*labels).observe(v)
    want = [line for line in generate_latest(reference_registry).decode().splitlines() if "_created" not in line]
    got_registry = CollectorRegistry()
    got_registry.register(tally)
    assert generate_latest(got_registry).decode().splitlines() == want


def test_tally_counter_matches_prometheus_client() -> None:
    reference_registry = CollectorRegistry()
    reference = Counter("finished", "doc", ["queue", "status"], registry=reference_registry)
    tally = TallyCounter("finished", "doc", ["queue", "status"], registry=CollectorRegistry())
    for i in range(7):
        for labels in (("a", "completed"), ("b", "failed" if i % 2 else "completed")):
            reference.labels(*labels).inc()
            tally.labels(*labels).inc()
    tally.labels("a", "completed").inc(2.5)
    reference.labels("a", "completed").inc(2.5)
    want = [line for line in generate_latest(reference_registry).decode().splitlines() if "_created" not in line]
    got_registry = CollectorRegistry()
    got_registry.register(tally)
    assert generate_latest(got_registry).decode().splitlines() == want
