"""Redis CPU per task of the hot scripts, from ``INFO commandstats`` (``python -m bench.scriptcost``).

Starts its own redis-server, then for each script path resets the server's statistics, makes the
calls the services make (the same KEYS/ARGV builders: ``Queue.submit``, ``Promoter.promote_once``,
the consumer's take.lua arguments, ``Finisher``'s finish.lua call) and reads the time
Redis spent inside ``EVALSHA`` (the script and every command it called), divided by the tasks the
calls handled. The figure depends on the server's CPU, not on the client or the machine's load as
much as throughput does; but commandstats' time is wall-clock, so it grows while another process
has the core. The second figure is Redis's main-thread CPU time (``INFO cpu``, getrusage) over the
same calls: it also counts what the server does around the scripts (reading and parsing the calls,
writing replies, the INFO call), and on a shared VM it moved about as much as the first (cache and
core sharing); the lowest round of several is the least disturbed figure.

    .venv/bin/python -m bench.scriptcost                 # every phase, 5 rounds
    .venv/bin/python -m bench.scriptcost --rounds 9 --only promote,finish --breakdown
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from redis.asyncio import Redis

from bench.env import RedisServer, load
from streamq.services.scheduler.promoter import Promoter
from streamq.services.worker.finisher import Finisher
from streamq.services.worker.intake import take_call
from streamq.services.worker.jobs import Delivery, Job, Outcome
from streamq.shared.keys import WORKER_GROUP, KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.queue import Queue
from streamq.shared.streams import ensure_group

PHASES = (
    "submit",
    "submit-scheduled",
    "promote",
    "take",
    "finish",
    "finish-retry",
    "finish-fail",
    "finish-3",
)
SMALL = 3  # finish-3: outcomes per call at the worker's default concurrency
CONSUMER = "scriptcost-1"
FINISH_BATCH = 256  # the finisher's MAX_BATCH
T = TypeVar("T")
HISTORY = '{"attempt":1,"error":"boom","at":1700000000000}'


BREAKDOWN: dict[str, dict[str, list[float]]] = {}  # phase -> command -> us per task, per round (--breakdown)


async def main_thread_cpu_us(redis: Redis) -> float:
    """CPU time of Redis's main thread so far (getrusage: unlike commandstats' wall-clock usec, not
    inflated while another process has the core)."""
    cpu: dict[str, Any] = await redis.info("cpu")
    return (float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])) * 1e6


async def measure(redis: Redis, tasks: int, body: Awaitable[T], phase: str = "") -> tuple[float, float, T]:
    """us of EVALSHA per task over ``body``'s calls (commandstats), us of Redis main-thread CPU per
    task over the same calls (everything the server did meanwhile: parsing, replies, the INFO call),
    and what ``body`` returned; with ``phase``, the commands the scripts called are kept per task in
    BREAKDOWN."""
    await redis.config_resetstat()
    cpu_before = await main_thread_cpu_us(redis)
    value = await body
    cpu_after = await main_thread_cpu_us(redis)
    stats: dict[str, Any] = await redis.info("commandstats")
    if phase:
        per = BREAKDOWN.setdefault(phase, {})
        for name, row in stats.items():
            per.setdefault(name.removeprefix("cmdstat_"), []).append(int(row["usec"]) / tasks)
    row = stats.get("cmdstat_evalsha", {"usec": 0})
    return int(row["usec"]) / tasks, (cpu_after - cpu_before) / tasks, value


class Bench:
    def __init__(self, redis: Redis, prefix: str = "scriptcost", queue: str = "default") -> None:
        self.redis = redis
        self.keys = KeySchema(prefix, queue)
        self.queue = Queue(redis, self.keys, result_ttl_s=3600)
        self.promoter = Promoter(self.queue, batch=500)
        self.finisher = Finisher(
            self.queue.scripts,
            self.keys,
            group=WORKER_GROUP,
            consumer=CONSUMER,
            result_ttl_ms=self.queue.result_ttl_ms,
            events_maxlen=self.queue.events_maxlen,
        )

    async def setup(self) -> None:
        await ensure_group(self.redis, self.keys.streams(), WORKER_GROUP)
        far = datetime.now(UTC) + timedelta(days=1)
        for _ in range(5):  # a realistic scheduled zset: thousands of tasks due later
            await self.queue.submit([TaskCreate(type="noop", scheduled_for=far) for _ in range(1000)])

    async def submit(self, n: int, batch: int = 1000, due: datetime | None = None) -> None:
        for _ in range(n // batch):
            await self.queue.submit([TaskCreate(type="noop", scheduled_for=due) for _ in range(batch)])

    async def take(self, count: int) -> list[Job]:
        """take.lua: read up to ``count`` entries and start them (the consumer's ``take_call`` and
        ``jobs``, without the worker around them)."""
        keys, args = take_call(self.keys, count, consumer=CONSUMER, events_maxlen=self.queue.events_maxlen)
        reply = await self.queue.scripts.call("take", keys, args)
        return [Job.from_reply(Delivery(int(row[1]), row[0], row[2], self.keys), row[2:]) for row in reply]

    async def finish(self, outcomes: list[Outcome]) -> list[str]:
        reply = await self.queue.scripts.call(*self.finisher.finish_call(self.keys, outcomes))
        return [str(s) for s in reply]


def outcome(job: Job, phase: str) -> Outcome:
    if phase == "finish":
        return Outcome(job, True, '{"ok":true}')
    if phase == "finish-retry":
        return Outcome(job, False, "boom", delay_ms=3_600_000, history=HISTORY)
    return Outcome(job, False, "boom", delay_ms=-1, history=HISTORY)


Figures = tuple[float, float]  # (EVALSHA us per task, Redis main-thread CPU us per task)


async def run_round(b: Bench, phases: set[str], results: dict[str, list[Figures]]) -> None:
    r = b.redis
    if "submit" in phases:
        us, cpu, _ = await measure(r, 20_000, b.submit(20_000), "submit")
        results["submit"].append((us, cpu))
    if "submit-scheduled" in phases:
        later = datetime.now(UTC) + timedelta(days=1)
        us, cpu, _ = await measure(r, 5_000, b.submit(5_000, due=later), "submit-scheduled")
        results["submit-scheduled"].append((us, cpu))
    if "promote" in phases:
        server_s, server_us = await r.time()
        due_ms = server_s * 1000 + server_us // 1000 + 300
        await b.submit(500, 500, datetime.fromtimestamp(due_ms / 1000, UTC))
        await asyncio.sleep(0.35)
        promoted_before = b.promoter.promoted
        us, cpu, moved = await measure(r, 500, b.promoter.promote_once([b.keys]), "promote")
        assert b.promoter.promoted - promoted_before == 500, (b.promoter.promoted, promoted_before, moved)
        results["promote"].append((us, cpu))
    for phase in ("finish", "finish-retry", "finish-fail"):
        if phase not in phases and not (phase == "finish" and "take" in phases):
            continue
        await b.submit(FINISH_BATCH, FINISH_BATCH)
        first = phase == "finish"  # take is measured on the first batch only
        take = await measure(r, FINISH_BATCH, b.take(FINISH_BATCH), "take" if first else "")
        jobs = take[2]
        assert len(jobs) == FINISH_BATCH, len(jobs)
        if first:
            results["take"].append(take[:2])
        us, cpu, statuses = await measure(r, FINISH_BATCH, b.finish([outcome(j, phase) for j in jobs]), phase)
        expected = {"finish": "completed", "finish-retry": "scheduled", "finish-fail": "failed"}[phase]
        assert set(statuses) == {expected}, set(statuses)
        if phase in phases:
            results[phase].append((us, cpu))
    if "finish-3" in phases:  # many small calls: what a call costs besides its tasks
        n = FINISH_BATCH // SMALL * SMALL
        await b.submit(n, n)
        jobs = await b.take(n)
        us, cpu, statuses = await measure(r, n, finish_small(b, jobs), "finish-3")
        assert statuses == ["completed"] * n, set(statuses)
        results["finish-3"].append((us, cpu))


async def finish_small(b: Bench, jobs: list[Job]) -> list[str]:
    statuses: list[str] = []
    for i in range(0, len(jobs), SMALL):
        statuses += await b.finish([outcome(j, "finish") for j in jobs[i : i + SMALL]])
    return statuses


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):>7.2f} ({min(values):.2f}-{max(values):.2f})"


async def main_async(rounds: int, phases: set[str], breakdown: bool) -> None:
    server = RedisServer()
    redis = server.client()
    try:
        b = Bench(redis)
        await b.setup()
        await run_round(b, phases, {p: [] for p in PHASES})  # warm-up: scripts loaded, keys created
        BREAKDOWN.clear()
        results: dict[str, list[Figures]] = {p: [] for p in PHASES}
        started_load = load()
        t0 = time.monotonic()
        for _ in range(rounds):
            await run_round(b, phases, results)
        info = await redis.info("server")
        print(
            f"redis {info['redis_version']}, {rounds} rounds in {time.monotonic() - t0:.1f} s, "
            f"load (1 min) {started_load} -> {load()}; median (min-max) of the rounds, us per task"
        )
        print(f"{'script path':<18} {'EVALSHA (commandstats)':>24}  {'Redis main-thread CPU':>24}")
        for phase in PHASES:
            if results[phase]:
                evalsha, cpu = [f[0] for f in results[phase]], [f[1] for f in results[phase]]
                print(f"{phase:<18} {spread(evalsha):>24}  {spread(cpu):>24}")
                if breakdown:
                    rows = sorted(BREAKDOWN.get(phase, {}).items(), key=lambda kv: -statistics.median(kv[1]))
                    for name, per in rows:
                        if name not in ("evalsha", "config|resetstat", "info"):
                            print(f"  {name:<16} {statistics.median(per):>14.2f}")
    finally:
        await redis.aclose()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scriptcost", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma-separated, of: {', '.join(PHASES)}")
    parser.add_argument("--breakdown", action="store_true", help="also each command the scripts called, us/task")
    ns = parser.parse_args()
    phases = {p.strip() for p in ns.only.split(",") if p.strip()}
    unknown = phases - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    asyncio.run(main_async(ns.rounds, phases, ns.breakdown))


if __name__ == "__main__":
    main()
