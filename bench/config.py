"""Sizes and options of one benchmark run (every one settable from the command line)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from streamq.shared.settings import Settings

WORKLOADS = (
    "raw", "floor", "submit-single", "submit-batch", "drain", "latency", "wait", "direct", "schedule", "memory",
    "cluster", "otel", "soak", "workflows", "groups",
)  # fmt: skip


@dataclass(slots=True)
class Config:
    runs: int = 3
    only: list[str] = field(default_factory=lambda: list(WORKLOADS))
    raw_n: int = 200_000  # entries XADDed then drained by the bare loop
    raw_chunk: int = 1_000  # commands per pipeline / COUNT per XREADGROUP
    single_n: int = 10_000  # POST /api/tasks requests
    single_clients: int = 32  # concurrent keep-alive clients
    http_client: str = "raw"  # load generator: "raw" (bench/workloads/http.py) or "httpx"
    batch_n: int = 50_000  # tasks sent through POST /api/tasks/batch
    batch_size: int = 1_000
    batch_clients: int = 2
    drain_n: int = 20_000
    cluster_partitions: int = 0  # cluster workload: only this many partitions (0: 1, 2 and 3 in turn)
    workers: int = 2  # worker processes (drain, latency, schedule, memory)
    default_concurrency: int = Settings.model_fields["worker_concurrency"].default  # STREAMQ_WORKER_CONCURRENCY's
    tuned_concurrency: int = 256  # best of 64/128/256/512 here; the finisher batches up to 256
    latency_n: int = 2_000
    latency_rate: float = 200.0  # tasks/s, paced
    wait_n: int = 2_000  # tasks each long-polled through the api (GET /api/tasks/{id}?wait=)
    wait_rate: float = 200.0  # tasks/s, paced
    wait_waiters: int = 50  # concurrent long-poll connections
    wait_hold_s: float = 0.05  # each task's run (the built-in sleep): its waiter is parked before it ends
    direct_n: int = 2_000  # direct: single submits idle, then stamp tasks paced at latency_rate (direct, then api)
    direct_many_n: int = 50_000  # direct: tasks of one submit_many call (direct, then through the api)
    direct_taskiq: bool = False  # direct: also taskiq-redis (installed into the venv when asked: bench/peers.py)
    groups_count: int = 100  # groups: the drain's tasks spread over this many groups
    group_concurrency: int = 10  # groups: each group's concurrency limit
    held_n: int = 200  # groups-held: tasks of one group limited to one start per held_per_ms
    held_per_ms: float = 50.0
    schedule_n: int = 500
    schedule_ahead_s: float = 3.0
    scheduler_batch: int = 0  # STREAMQ_SCHEDULER_BATCH of the schedule workload's scheduler; 0 = its default
    memory_n: int = 100_000
    memory_ttl_s: int = 60  # result TTL of the memory workload's workers (longer than its submit + drain)
    memory_runs: int = 1  # bytes per task do not depend on timing: one run is enough by default
    otel_n: int = 2_000  # otel: batch-submitted tasks per round (tracing off, then on); a fifth more one by one
    otel_pairs: int = 1  # otel: interleaved off/on rounds per run (bench/README.md quotes --otel-pairs 3)
    otel_runs: int = 1  # otel: its pairs are interleaved already
    soak_s: float = 10.0  # soak: seconds of steady load (the soak: --soak-s 600)
    soak_rate: float = 500.0  # soak: tasks/s submitted
    soak_batch: int = 50  # soak: tasks per POST /api/tasks/batch
    soak_keep: int = 2_000  # soak: the completed tasks' count bound (STREAMQ_RETENTION_COMPLETED_COUNT)
    soak_events_maxlen: int = 10_000  # soak: STREAMQ_EVENTS_MAXLEN
    soak_runs: int = 1  # soak: one long run says more than several short ones
    workflow_width: int = 998  # workflows: the fan-out's middle (1 -> width -> 1, against width + 2 tasks)
    chain_length: int = 100  # workflows: steps of the chain whose parent-to-child gaps are measured
    profile: bool = False  # py-spy record every service process (collapsed stacks in bench/results/)
    trace: bool = False  # latency and schedule: workers stamp each stage (bench/handlers.py), figures per stage
    out: str | None = None  # JSON path; default bench/results/<date>.json

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
