"""Workflows with real worker processes: 50 workflows (diamonds and 1 -> 200 -> 1 fan-out/fan-in), 3
workers, 10 SIGKILLs during the run. Every workflow ends completed, no step started before its parents
completed, and afterwards nothing is left running or waiting. Runs in the cluster pass too."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamq.shared.broker import Broker
from streamq.shared.keys import KeySchema
from streamq.shared.models import TaskStatus
from streamq.shared.settings import Settings
from streamq.shared.workflows import StepCreate, WorkflowCreate, WorkflowPublic, Workflows
from streamq.testing import Service
from tests.e2e.handlers import read_runs
from tests.e2e.processes import service_env, start_workers, stop_all

pytestmark = pytest.mark.e2e


def _step(after: list[str]) -> StepCreate:
    return StepCreate(type="rel_sleep", payload=round(random.uniform(0.02, 0.05), 4), after=after)


def diamond() -> WorkflowCreate:
    spec = {"top": [], "left": ["top"], "right": ["top"], "bottom": ["left", "right"]}
    return WorkflowCreate(name="diamond", steps={name: _step(after) for name, after in spec.items()})


def fan(width: int = 200) -> WorkflowCreate:
    steps = {"source": _step([])}
    steps.update({f"m{i}": _step(["source"]) for i in range(width)})
    steps["sink"] = _step([f"m{i}" for i in range(width)])
    return WorkflowCreate(name="fan", steps=steps)


async def wait_all(flows: Workflows, ids: list[str], timeout: float) -> list[WorkflowPublic]:
    deadline = time.monotonic() + timeout
    while True:
        done = [await flows.get(i) for i in ids]
        running = [w.id for w in done if w.status == "running"]
        if not running:
            return done
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(running)} workflows still running after {timeout} s: {running[:5]}")
        await asyncio.sleep(0.2)


@pytest.mark.timeout(240)
async def test_chaos_workflows_all_complete(settings: Settings, redis: Redis, keys: KeySchema, log_dir: Path) -> None:
    runs = log_dir / "runs.txt"
    env = service_env(settings, runs, lease_s=2, worker_concurrency=4)
    workers = await start_workers(env, log_dir, 3)
    broker = Broker(redis, keys, events_maxlen=settings.events_maxlen, result_ttl_s=settings.result_ttl_s)
    flows = Workflows(broker)
    try:
        ids = [(await flows.submit(diamond() if i % 2 else fan()))[0].id for i in range(50)]
        for kill in range(10):  # one worker SIGKILLed and restarted every 1.5 s (the run lasts ~20 s)
            await asyncio.sleep(1.5)
            victim = workers[kill % 3]
            victim.signal(signal.SIGKILL)
            victim.wait(10)
            victim.stop()
            workers[kill % 3] = Service("streamq.services.worker", env, log_dir, name=f"worker{kill % 3}-r{kill}")
        done = await wait_all(flows, ids, timeout=150)
    finally:
        stop_all(workers)
    assert [w.status for w in done] == ["completed"] * 50
    ran = {task for task, _pid in read_runs(str(runs))}
    for workflow in done:
        steps = workflow.steps
        for step in steps.values():
            assert step.status == TaskStatus.COMPLETED and step.task_id in ran
            assert step.started_at is not None and step.completed_at is not None
            for parent in step.after:  # its last run started after every parent had completed
                parent_done = steps[parent].completed_at
                assert parent_done is not None and step.started_at >= parent_done, (workflow.id, step.name, parent)
    # nothing running, nothing waiting on parents, nothing queued without a task
    assert await redis.zcard(keys.workflow_index("running")) == 0
    assert await redis.zcard(keys.index_status(TaskStatus.WAITING)) == 0
    assert await redis.zcard(keys.index_status(TaskStatus.PENDING)) == 0
    assert await redis.zcard(keys.index_status(TaskStatus.PROCESSING)) == 0
    reruns = len(read_runs(str(runs))) - len(ran)
    print(f"\nworkflow chaos: 50 workflows ({sum(len(w.steps) for w in done)} steps), 10 SIGKILLs, {reruns} re-runs")
