"""taskiq-redis beside the ``direct`` workload: the same send-to-start measure, on the same Redis, in the
same run, in chunks alternating with streamq's (``--direct-taskiq``). taskiq is not a dependency of the
project: it is installed into the venv (``pip install taskiq-redis``) only when this is asked for, and its
worker and producer run as separate processes from a module written into the run's log folder, so the
benchmark process never imports it (and ``make test`` never installs it). When it cannot be installed,
the figures say so."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.stats import percentile
from bench.workloads.base import Figures
from streamq.testing import Service

PACKAGE = "taskiq-redis"
# the peer's task and producer: ListQueueBroker (LPUSH / BRPOP), a no-op task that records when it
# started; the producer paces its sends as the direct workload does and prints the send-to-start ms
PEER = """
import asyncio, json, os, sys, time
from redis.asyncio import Redis
from taskiq_redis import ListQueueBroker

URL = os.environ["PEER_REDIS_URL"]
# redis-py 8 reads with a default socket timeout: taskiq's endless BRPOP needs none, or an idle worker dies
broker = ListQueueBroker(URL, queue_name="peer-bench", socket_timeout=None)
_redis = None


@broker.task(task_name="peer_stamp")  # by name: the producer runs this file as __main__
async def stamp(sent: float) -> None:
    global _redis
    now = time.time()
    if _redis is None:
        _redis = Redis.from_url(URL)
    await _redis.rpush("peer-bench:started", f"{sent} {now}")


async def produce(n: int, rate: float) -> None:
    await broker.startup()
    redis = Redis.from_url(URL)
    for _ in range(20):  # warm-up
        await stamp.kiq(time.time())
    await asyncio.sleep(1.0)
    await redis.delete("peer-bench:started")
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await stamp.kiq(time.time())
    deadline = time.monotonic() + 60
    while await redis.llen("peer-bench:started") < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    rows = [r.decode().split() for r in await redis.lrange("peer-bench:started", 0, -1)]
    print(json.dumps([(float(b) - float(a)) * 1000 for a, b in rows]))
    await broker.shutdown()
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(produce(int(sys.argv[1]), float(sys.argv[2])))
"""


def installed() -> bool:
    """taskiq-redis importable, installing it into this venv first if it is not (a printed note if that fails)."""
    if importlib.util.find_spec("taskiq_redis") is not None:
        return True
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", PACKAGE], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        print(f"bench: {PACKAGE} is not installable here, taskiq not measured: {done.stderr.strip()[-300:]}")
        return False
    importlib.invalidate_caches()
    return importlib.util.find_spec("taskiq_redis") is not None


class TaskiqPeer:
    """taskiq-redis's worker processes (``workers`` of them, started once) on the same Redis as streamq's
    stack: each :meth:`chunk` runs the peer's producer for ``n`` tasks paced at ``rate`` and returns their
    send-to-start ms. The direct workload alternates these chunks with its own, so both queues are measured
    in the same minutes, each while the other idles beside it (the VM's speed drifts within a run)."""

    def __init__(self, redis_url: str, log_dir: Path, workers: int) -> None:
        self.folder = log_dir / "peer"
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "peer_taskiq.py").write_text(PEER)
        self.env = {"PEER_REDIS_URL": redis_url, "PYTHONPATH": str(self.folder)}
        taskiq = str(Path(sys.executable).parent / "taskiq")
        command = [taskiq, "worker", "peer_taskiq:broker", "--workers", str(workers)]
        self.worker = Service("taskiq-worker", self.env, self.folder, command=command, cwd=self.folder)
        time.sleep(3.0)  # taskiq logs nothing we can wait for reliably; its workers start within a second here

    def chunk(self, n: int, rate: float) -> list[float]:
        out = subprocess.run(
            [sys.executable, str(self.folder / "peer_taskiq.py"), str(n), str(rate)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **self.env},
            check=True,
        ).stdout
        return [float(ms) for ms in json.loads(out)]

    def stop(self) -> None:
        self.worker.stop()


def figures(samples: list[float]) -> Figures:
    """taskiq-redis's send-to-start p50/p95/p99 ms."""
    return {f"taskiq_started_p{p}_ms": percentile(samples, p) for p in (50, 95, 99)}
