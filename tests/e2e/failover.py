"""What the failover tests share: a submitter that records every acknowledged id, and checks on what
became of them (``test_sentinel_failover.py``, ``test_cluster_failover.py``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.keys import KeySchema
from shared.models import _CROCKFORD as CROCKFORD

TOTAL = 5000
BATCH = 100
TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class Submissions:
    acked: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # why a submission was not acknowledged
    failover_s: float = 0.0  # from SIGKILL to the sentinels naming the new master
    cut_ms: int = 0  # when the replica lost its link
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
