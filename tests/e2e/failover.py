"""What the failover tests share: a submitter that records every acknowledged id, and checks on what
became of them (``test_sentinel_failover.py``, ``test_cluster_failover.py``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.models import _CROCKFORD as CROCKFORD
from streamq.testing import Service, free_port

TOTAL = 5000
BATCH = 100
TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class Submissions:
    acked: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # why a submission was not acknowledged
    failover_s: float = 0.0  # from SIGKILL to the new master named (sentinels) or serving (cluster)
    cut_ms: int = 0  # when the replica lost its link (Sentinel test)
    kill_ms: int = 0  # when the master was killed
    lost_window_ms: tuple[int, int] = (0, 0)  # creation times of the lost tasks, relative to the cut


async def submit(http: httpx.AsyncClient, url: str, out: Submissions, stop: asyncio.Event, total: int = TOTAL) -> None:
    """Batches of 100 and runs of 10 singles, until ``total`` are acknowledged."""
    round_ = 0
    while len(out.acked) < total and not stop.is_set():
        round_ += 1
        singles = round_ % 3 == 0
        bodies = [("", {"type": "echo", "payload": i}) for i in range(10)] if singles else []
        if not singles:
            bodies = [("/batch", {"tasks": [{"type": "echo", "payload": i} for i in range(BATCH)]})]
        for path, body in bodies:
            try:
                response = await http.post(f"{url}/api/tasks{path}", json=body)
            except httpx.HTTPError as error:
                out.refused[type(error).__name__] += 1
                await asyncio.sleep(0.1)
                continue
            if response.status_code != 201:
                out.refused[str(response.status_code)] += 1
                await asyncio.sleep(0.1)
                continue
            reply = response.json()
            out.acked += [t["id"] for t in reply["tasks"]] if path else [reply["id"]]


def id_ms(task_id: str) -> int:
    """The creation time (ms) a task id starts with (10 Crockford base32 digits)."""
    value = 0
    for char in task_id[:10]:
        value = value * 32 + CROCKFORD.index(char)
    return value


def task_statuses(client: Any, keys: KeySchema, ids: list[str]) -> list[str | None]:
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(keys.task(task_id), "status")
    return pipe.execute()  # type: ignore[no-any-return]


async def wait_terminal(client: Any, keys: KeySchema, ids: list[str], timeout: float) -> Counter[str]:
    deadline = time.monotonic() + timeout
    while True:
        counts = Counter(str(s) for s in task_statuses(client, keys, ids))
        if set(counts) <= TERMINAL | {"None"} or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.5)


def start_services(redis_url: str, log_dir: Path, prefix: str, durable: str) -> tuple[str, list[Service]]:
    """An api and 2 workers on ``redis_url``, as processes; returns the api's base URL and them."""
    port = free_port()
    env = {
        "STREAMQ_REDIS_URL": redis_url,
        "STREAMQ_KEY_PREFIX": prefix,
        "STREAMQ_API_PORT": str(port),
        "STREAMQ_METRICS_PORT": "0",
        "STREAMQ_HEARTBEAT_S": "1",
        "STREAMQ_LEASE_S": "3",  # a task whose worker lost its connection mid-run is reclaimed quickly
        "STREAMQ_WORKER_CONCURRENCY": "8",
        "STREAMQ_LOG_LEVEL": "INFO",
        "STREAMQ_DURABLE_SUBMIT": durable,
    }
    services = [Service("streamq.services.api", env, log_dir, name="api")]
    services += [Service("streamq.services.worker", env, log_dir, name=f"worker{i}") for i in range(2)]
    return f"http://127.0.0.1:{port}", services


def assert_settled(client: Any, keys: KeySchema, counts: Counter[str], services: list[Service]) -> None:
    """Every task counted is terminal, nothing is left pending or processing (indexes, the consumer
    group's pending lists), and every service still runs."""
    assert set(counts) <= TERMINAL, f"stuck tasks: {counts}"
    for stream in keys.streams():
        if client.exists(stream):
            assert client.xpending(stream, WORKER_GROUP)["pending"] == 0, stream
    assert client.zcard(keys.index_status("processing")) == 0
    assert client.zcard(keys.index_status("pending")) == 0
    for service in services:
        assert service.proc.poll() is None, f"{service.name} exited:\n{service.log()[-2000:]}"
