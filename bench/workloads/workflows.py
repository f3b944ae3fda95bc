"""workflows: the cost of a workflow's dependencies on the same workers (docs/workflows.md).

fan: 1,000 independent noop tasks, then a 1 -> 998 -> 1 workflow of noop steps, each submitted while the
workers idle; each timed from its first ``started_at`` to its last ``completed_at`` (Redis's stamps);
``fan_over_independent`` = workflow / independent (target <= 1.5).
chain: a 100-step chain of noop steps; per link, the child's ``started_at`` minus its parent's
``completed_at`` (Redis clock, whole ms): ``chain_gap_p50/p99_ms`` (target p99 <= 2 ms: the child is
released by its parent's finish script, not by a poller).
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bench.env import redis_cpu_seconds
from bench.stats import percentile
from bench.workloads.base import Context, Figures, enqueue, task_fields, wait_completed
from streamq.shared.broker import Broker
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskCreate
from streamq.shared.workflows import StepCreate, WorkflowCreate, Workflows


def fan(width: int) -> WorkflowCreate:
    steps = {"source": StepCreate(type="noop")}
    steps.update({f"m{i}": StepCreate(type="noop", after=["source"]) for i in range(width)})
    steps["sink"] = StepCreate(type="noop", after=[f"m{i}" for i in range(width)])
    return WorkflowCreate(name="fan", steps=steps)


def chain(length: int) -> WorkflowCreate:
    steps = {"s0": StepCreate(type="noop")}
    steps.update({f"s{i}": StepCreate(type="noop", after=[f"s{i - 1}"]) for i in range(1, length)})
    return WorkflowCreate(name="chain", steps=steps)


def span_ms(stamps: list[list[str | None]]) -> int:
    first = min(int(s[0] or 0) for s in stamps)
    last = max(int(s[1] or 0) for s in stamps)
    return max(last - first, 1)


async def until_ended(redis: Redis, keys: KeySchema, workflow_id: str, timeout: float) -> None:
    """Until the workflow's status is no longer running: one HGET a poll (a full read of a 1,000-step
    workflow would take this process's CPU from the workers on a small machine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await redis.hget(keys.workflow(workflow_id), "status") == "running":
        if loop.time() > deadline:
            raise TimeoutError(f"bench: workflow {workflow_id} still running after {timeout} s")
        await asyncio.sleep(0.05)


async def run(ctx: Context) -> Figures:
    cfg = ctx.config
    stack = ctx.stack()
    queue = ctx.queue(stack.keys)
    assert ctx.library is not None
    flows = Workflows(Broker(ctx.library, stack.keys))
    n = cfg.workflow_width + 2
    try:
        workers = await stack.workers(ctx.redis, cfg.workers, cfg.tuned_concurrency)
        await asyncio.sleep(0.5)  # let the workers settle into their blocking read
        await queue.submit([TaskCreate(type="noop")])  # warm-up
        await wait_completed(ctx.redis, stack.keys, 1, *workers, timeout=30)
        cpu = await redis_cpu_seconds(ctx.redis)
        ids = await enqueue(queue, n, chunk=n)
        await wait_completed(ctx.redis, stack.keys, 1 + n, *workers, timeout=60)
        independent_cpu = await redis_cpu_seconds(ctx.redis) - cpu
        independent = span_ms(await task_fields(ctx.redis, stack.keys, ids, "started_at", "completed_at"))
        cpu = await redis_cpu_seconds(ctx.redis)
        fanned, _ = await flows.submit(fan(cfg.workflow_width))
        await until_ended(ctx.redis, stack.keys, fanned.id, timeout=120)
        fan_cpu = await redis_cpu_seconds(ctx.redis) - cpu
        done = await flows.get(fanned.id)
        step_ids = [s.task_id for s in done.steps.values()]
        fan_stamps = await task_fields(ctx.redis, stack.keys, step_ids, "started_at", "completed_at")
        workflow = span_ms(fan_stamps)
        chained, _ = await flows.submit(chain(cfg.chain_length))
        await until_ended(ctx.redis, stack.keys, chained.id, timeout=120)
        links = (await flows.get(chained.id)).steps
    finally:
        stack.stop()
    order = [links[f"s{i}"].task_id for i in range(cfg.chain_length)]
    stamps = await task_fields(ctx.redis, stack.keys, order, "started_at", "completed_at")
    gaps = [int(stamps[i][0] or 0) - int(stamps[i - 1][1] or 0) for i in range(1, len(stamps))]
    source, middle, sink = fan_stamps[0], fan_stamps[1:-1], fan_stamps[-1]
    return {
        "independent_ms": float(independent),
        "fan_ms": float(workflow),
        # where the fan's time goes: the middle's own span, and the two releases (fan-out, fan-in)
        "fan_middle_ms": float(span_ms(middle)),
        "fan_out_gap_ms": float(min(int(m[0] or 0) for m in middle) - int(source[1] or 0)),
        "fan_in_gap_ms": float(int(sink[0] or 0) - max(int(m[1] or 0) for m in middle)),
        "independent_redis_cpu_ms": independent_cpu * 1000,
        "fan_redis_cpu_ms": fan_cpu * 1000,
        "fan_over_independent": workflow / independent,
        "chain_gap_p50_ms": percentile([float(g) for g in gaps], 50),
        "chain_gap_p99_ms": percentile([float(g) for g in gaps], 99),
        "chain_gap_max_ms": float(max(gaps)),
    }
