"""The client's models cover the api's, and importing the client loads no server dependency."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import BaseModel

import streamq
from streamq import _core
from streamq.services.api.routes.queues import QueuePublic
from streamq.shared.models import BatchResult, Stats, TaskBatchCreate, TaskPublic, TaskStatus, WorkerInfo
from streamq.shared.schedules import SchedulePublic
from tests.support import ROOT


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (streamq.Task, TaskPublic),
        (streamq.Stats, Stats),
        (streamq.Worker, WorkerInfo),
        (streamq.Queue, QueuePublic),
        (streamq.Schedule, SchedulePublic),
    ],
)
def test_client_model_covers_every_api_field(ours: type[BaseModel], theirs: type[BaseModel]) -> None:
    assert set(theirs.model_fields) <= set(ours.model_fields)


def test_task_takes_the_fields_other_work_adds() -> None:
    """progress and cancel requests: optional, so an api with or without them is read alike."""
    assert {"progress", "progress_message", "cancel_requested"} <= set(streamq.Task.model_fields)


def test_statuses_and_limits_match() -> None:
    assert {s.value for s in streamq.TaskStatus} == {s.value for s in TaskStatus}
    assert TaskBatchCreate.model_fields["tasks"].metadata[1].max_length == _core.BATCH_LIMIT
    assert set(BatchResult.model_fields) >= {"tasks"}


SERVER_PACKAGES = ("services", "shared", "dashboard")


def test_importing_the_client_loads_no_server_stack() -> None:
    code = (
        "import json, sys, streamq\n"
        "c = streamq.Client('http://127.0.0.1:1'); c.close()\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in json.loads(out)}
    server = {name for name in json.loads(out) if name.split(".")[:2] in (["streamq", s] for s in SERVER_PACKAGES)}
    assert not loaded & {"fastapi", "uvicorn", "prometheus_client", "starlette", "redis"}
    assert not server, server


def test_handler_api_is_reexported() -> None:
    from streamq.services.worker.registry import TaskContext, handler
    from streamq.shared.errors import Permanent, Retry

    assert (streamq.handler, streamq.TaskContext, streamq.Retry, streamq.Permanent) == (
        handler,
        TaskContext,
        Retry,
        Permanent,
    )
