"""The worker's lock-free histograms expose exactly what a prometheus-client Histogram would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from shared.metrics import TIME_BUCKETS, TallyHistogram


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
